"""Reading what the CLI printed or wrote, in-process: CSV text as rows; main()'s exit code and error lines."""

from __future__ import annotations

import csv
import io

from vcritic.cli.app import main


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def run_main(args, capsys) -> tuple[int, str]:
    """Through vcritic's entry point, where errors become two lines and an exit code: (exit code, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err
