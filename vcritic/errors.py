"""The one error type users see.

Anything wrong with what the user asked for (a missing file, an unknown model, a bad option value) is raised as
:class:`VcriticError` with a one-line message and, where there is one, a hint naming the fix. The CLI turns it into
two lines on stderr and exit code 1 in one place (``vcritic.cli.app.main``); library users can catch it.
"""

from __future__ import annotations


class VcriticError(Exception):
    """A problem the user can fix. ``message`` says what is wrong, ``hint`` what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(VcriticError):
    """The command line itself is wrong (missing or conflicting arguments): exit code 2, as for Typer's own."""

    exit_code = 2
