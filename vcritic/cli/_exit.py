"""The commands' exit codes other than 0: 1 for a VcriticError and 2 for a usage error (:mod:`vcritic.errors`),
and these."""

from __future__ import annotations

EXIT_PARTIAL = 3  # some inputs failed (their rows say why), the others are done: what every batch command exits with
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C, after the rows already done were kept
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `yes | head` reports: the reader left, nothing failed here
