"""Size bounds on the files vcritic reads whole, checked before reading: a wrong or hostile file costs one line,
not all the memory of the machine, and a FIFO or device named as an input file is refused instead of read forever.

Images are bounded by Pillow's decompression-bomb limit (vcritic.base.images), training dialogues by
vcritic.data.dialogues, Excel workbooks by their expanded size and .mat files by their size
(vcritic.datasets.records), the training log by its line length (vcritic.training.run_folder), --instruct files
(vcritic.data.instruct) and the rewrite server's answer (vcritic.data.rewrite) by their size.
docs/reference/errors.md lists every bound.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from vcritic.errors import VcriticError

MAX_TABLE_BYTES = 256 << 20  # a CSV: manifest, annotation table, predictions, pairs (1M rows is about 100 MB)
MAX_JSON_BYTES = 16 << 20  # calibration.json, data.json, run.json, vcritic.json, metrics.json, summary.json
# An output CSV that --resume reads back. It is a bound, not a streaming read: resuming needs every row in memory to
# pair it with the run's inputs, so what a stream would save is only the raw bytes. 4 times a table input: a score
# row is 60 to 250 bytes, so 4 to 17 million rows, more than a 256 MiB manifest can list.
MAX_RESUME_BYTES = 1 << 30
MAX_YAML_BYTES = 1 << 20  # a training config
# JSON vcritic wrote itself beside bigger files: a run folder's marker, a checkpoint's position.json and
# scheduler.json, a peft adapter's adapter_config.json. Each is under 10 KB as written.
MAX_SMALL_JSON_BYTES = 1 << 20


def size_text(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def check_input(path: str | os.PathLike, limit: int, what: str) -> None:
    """Refuse ``path`` unless it is a regular file of at most ``limit`` bytes. A path that cannot be looked at is
    left to the reader, which names its own error (not found, permission denied)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return
    if stat.S_ISDIR(info.st_mode):
        return  # the reader says "is a folder" in its own words
    if not stat.S_ISREG(info.st_mode):
        raise VcriticError(f"{path} is not a regular file (a FIFO or a device?)", hint=f"give {what} as a file")
    if info.st_size > limit:
        raise too_large(path, info.st_size, limit, what)


def too_large(
    path: str | os.PathLike, size: int, limit: int, what: str, hint: str = "check that this is the file you meant"
) -> VcriticError:
    """The error for ``path``, of ``size`` bytes, over the ``limit`` that ``what`` may be."""
    shown, most = size_text(size), size_text(limit)
    if shown == most:  # just over: rounding would show the same figure twice
        shown, most = f"{size:,} bytes", f"{limit:,} bytes"
    return VcriticError(f"{Path(path)} is {shown}, over the {most} {what} may be", hint=hint)


def read_json_object(path: str | os.PathLike, what: str, hint: str, limit: int | None = None) -> dict[str, Any]:
    """The JSON object in ``path``, refused in one :class:`VcriticError` naming the file when it is over ``limit``
    bytes (default :data:`MAX_JSON_BYTES`), not a regular file, not UTF-8, not JSON, nested too deeply or not an
    object. ``what`` names the kind of file ("a position.json"); ``hint`` says how to get a good one."""
    path = Path(path)
    check_input(path, MAX_JSON_BYTES if limit is None else limit, what)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise VcriticError(f"cannot read {path}: {err.strerror or err}", hint=hint) from None
    except UnicodeDecodeError:
        raise VcriticError(f"{path} is not {what} vcritic can read: not UTF-8 text", hint=hint) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise VcriticError(
            f"{path} is not {what} vcritic can read: not valid JSON ({err.msg}, line {err.lineno})", hint=hint
        ) from None
    except RecursionError:
        raise VcriticError(f"{path} is not {what} vcritic can read: nested too deeply", hint=hint) from None
    if not isinstance(value, dict):
        raise VcriticError(f"{path} is not {what} vcritic can read: the JSON is not an object", hint=hint)
    return value
