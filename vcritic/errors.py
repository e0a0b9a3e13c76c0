"""The one error type users see.

Anything wrong with what the user asked for (a missing file, an unknown model, a bad option value) is raised as
:class:`VcriticError` with a one-line message and, where there is one, a hint naming the fix. The CLI turns it into
two lines on stderr and its ``exit_code`` in one place (``vcritic.cli.app.main``): 2 for a :class:`UsageError` (the
command line itself is wrong: a bad option value, options that exclude each other), 1 for everything else (a file
that is missing or bad, a model that does not load, a failure mid-run). Library users catch :class:`VcriticError`.
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
    """The command line itself is wrong (a bad option value, missing or conflicting options): exit code 2, as for
    Typer's own checks. Raised before any work is done."""

    exit_code = 2
