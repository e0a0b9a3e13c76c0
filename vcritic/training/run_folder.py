"""The run folder ``OUT`` of ``vcritic train``: vcritic's mark on it, its lock, the checks before a run, and the
metrics log.

``OUT/.vcritic-output.json`` is written first: the proof that vcritic made the folder, and the names it wrote there,
so ``--overwrite`` replaces only such a folder and only those names. Beside it: ``run.json``
(:mod:`vcritic.training.run_json`), ``metrics.jsonl`` (one JSON object per log line), ``checkpoints/step-N``
(:mod:`vcritic.training.checkpoints`) and, at the end, the trained directory (:mod:`vcritic.training.export`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vcritic.base.files import check_output_folder, locked_folder, open_atomically, write_json_atomically
from vcritic.base.limits import MAX_SMALL_JSON_BYTES, read_json_object
from vcritic.errors import VcriticError
from vcritic.model.vcritic_json import VCRITIC_JSON
from vcritic.training.checkpoints import CHECKPOINTS, checkpoint_dirs
from vcritic.training.run_json import RUN

OWNED = ".vcritic-output.json"  # written first in a run folder: the proof it is vcritic's, and what it wrote there
METRICS = "metrics.jsonl"
MAX_METRICS_LINE_BYTES = 1 << 16  # a log line vcritic writes is under 1 KB


@contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """The output folder locked for the whole run (:func:`vcritic.base.files.locked_folder`) by the launching process,
    rank 0, only: a second run writing the same folder is refused instead of mixing checkpoints and adapters."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    with locked_folder(output, flag="--output"):
        yield


def check_not_inputs(output: Path, *, model: str, data: Path) -> None:
    """Refuse an output that is, or holds, the --model folder or the --data folder: the run starts by emptying it,
    and a later stage's export copies the earlier stage's adapters out of --model."""
    where = output.resolve()
    for flag, folder in (("--model", Path(model).expanduser()), ("--data", data)):
        if folder.is_dir() and (folder.resolve() == where or where in folder.resolve().parents):
            raise VcriticError(
                f"--output {output} would replace {flag} {folder}, which this run reads",
                hint="write the new training output to another folder",
            )


def check_output(output: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse, before any work, an output that would be overwritten without ``overwrite`` (or not resumed), and an
    ``overwrite`` of a folder that is not a vcritic training output or holds anything vcritic did not write there."""
    ours = (output / RUN).is_file() or (output / VCRITIC_JSON).is_file()
    if resume:
        if not checkpoint_dirs(output):
            # A run stopped before its first checkpoint left run.json: rerunning without --resume is refused too.
            hint = "start it again with --overwrite" if ours else "start the run without --resume"
            raise VcriticError(f"nothing to resume in {output}: no checkpoint", hint=hint)
        return
    check_output_folder(output, hint="choose another --output")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            if not ours:
                hint = "choose an empty folder"
            elif checkpoint_dirs(output):
                hint = "pass --resume to continue it, or --overwrite to start again"
            else:
                hint = "it stopped before its first checkpoint, so there is nothing to resume: pass --overwrite"
            raise VcriticError(f"{output} already exists and is not empty", hint=hint)
        # A run.json alone proves nothing (any folder can hold one): only vcritic's own marker does.
        if not (output / OWNED).is_file():
            raise VcriticError(
                f"{output} is not a folder vcritic train made (it has no {OWNED}); --overwrite only replaces those",
                hint="choose an empty or new folder (an output of an earlier vcritic version has no marker: delete it "
                "yourself if it is one)",
            )
        stray = _not_written_by_vcritic(output)
        if stray:
            raise VcriticError(
                f"{output} holds {stray}, which vcritic did not write; --overwrite would delete it",
                hint="move it out of the folder, or choose another --output",
            )


def create_output(output: Path) -> None:
    """A fresh output folder, marked as vcritic's. An earlier output there was accepted by :func:`check_output`: its
    entries, all vcritic's, go; the folder itself stays (it holds the run's lock)."""
    output.mkdir(parents=True, exist_ok=True)
    for name in _written_by_vcritic(output):
        entry = output / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
    write_json_atomically(output / OWNED, {"written_by": "vcritic train", "files": []})


@contextmanager
def recording_written(output: Path) -> Iterator[None]:
    """Add to the marker what appears in ``output`` inside the block (the trained directory's files), also what a
    failed block left, so a later ``--overwrite`` knows them as vcritic's."""
    before = {entry.name for entry in output.iterdir()}
    try:
        yield
    finally:
        _record_written(output, before)


def _record_written(output: Path, before: set[str]) -> None:
    try:
        now = {entry.name for entry in output.iterdir()}
        record = _read_marker(output)
    except (OSError, VcriticError):
        return  # after the work: a marker that cannot be read is left as it is rather than fail the run
    record["files"] = sorted(set(record.get("files", [])) | (now - before))
    write_json_atomically(output / OWNED, record)


def _written_by_vcritic(output: Path) -> set[str]:
    """The names directly in ``output`` that vcritic train wrote there, as its marker records them."""
    recorded = _read_marker(output)["files"] if (output / OWNED).is_file() else []
    names = {name for name in recorded if isinstance(name, str) and "/" not in name and name not in ("", ".", "..")}
    return {OWNED, RUN, METRICS, CHECKPOINTS, *names}


def _read_marker(output: Path) -> dict:
    """``output``'s marker, refused in one line over its size bound or damaged (its ``files`` not a list)."""
    path = output / OWNED
    hint = "if the folder is an output of vcritic train, delete it yourself; or choose another --output"
    record = read_json_object(path, "a vcritic train output marker", hint, MAX_SMALL_JSON_BYTES)
    record.setdefault("files", [])
    if not isinstance(record["files"], list):
        raise VcriticError(
            f"{path} is not a vcritic train output marker vcritic can read: 'files' is not a list", hint=hint
        )
    return record


def _not_written_by_vcritic(output: Path) -> str | None:
    """One entry of ``output`` (or of its checkpoints folder) that vcritic did not write, or None."""
    known = _written_by_vcritic(output)
    for entry in sorted(output.iterdir()):
        if entry.name not in known:
            return entry.name
    checkpoints = output / CHECKPOINTS
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        for entry in sorted(checkpoints.iterdir()):
            if not re.match(r"^(\.tmp-)?step-\d+$", entry.name) or entry.is_symlink():
                return f"{CHECKPOINTS}/{entry.name}"
    elif checkpoints.exists() or checkpoints.is_symlink():
        return CHECKPOINTS
    return None


def append_metrics(output: Path, record: dict) -> None:
    with (output / METRICS).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def truncate_metrics(output: Path, step: int) -> None:
    """Drop log lines past the checkpoint being resumed, so the log reads as one run, and lines that are no log
    record (the torn last line of a killed run, a damaged one). Copied line by line, never read whole."""
    path = output / METRICS
    if not path.is_file():
        return
    with path.open("rb") as source, open_atomically(path, "wb") as target:
        for line in _log_lines(source):
            if (logged := _logged_step(line)) is not None and logged <= step:
                target.write(line.rstrip(b"\r\n") + b"\n")


def _log_lines(source) -> Iterator[bytes]:
    """The lines of ``source``, less those over :data:`MAX_METRICS_LINE_BYTES` (skipped without holding them)."""
    while line := source.readline(MAX_METRICS_LINE_BYTES + 1):
        if len(line) <= MAX_METRICS_LINE_BYTES or line.endswith(b"\n"):
            yield line
            continue
        while (rest := source.readline(MAX_METRICS_LINE_BYTES)) and not rest.endswith(b"\n"):
            pass


def _logged_step(line: bytes) -> int | None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if type(step) is int else None
