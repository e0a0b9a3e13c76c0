"""How fast, and in how much memory, hostile inputs are refused with vcritic's real limits: a zip-bomb workbook just
past the expanded-size limit, a dialogue line holding a 5 MB instruction, and a CSV just past the table limit.
Prints one line per case. Writes its files to a temporary folder and removes them.

    python benchmarks/hostile_inputs.py
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
import zipfile
from pathlib import Path

from vcritic.errors import VcriticError


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _refused(label: str, call) -> None:
    before = _rss_mib()
    started = time.perf_counter()
    try:
        call()
    except VcriticError as err:
        seconds = time.perf_counter() - started
        print(f"{label}: refused in {seconds * 1000:.1f} ms, peak RSS +{_rss_mib() - before:.0f} MiB: {err.message}")
        return
    print(f"{label}: NOT refused")


def main() -> None:
    from vcritic.base.limits import MAX_TABLE_BYTES
    from vcritic.data.dialogues import read_dialogues
    from vcritic.datasets.records import MAX_XLSX_EXPANDED, read_xlsx_rows
    from vcritic.readout.prompts import QUALITY

    with tempfile.TemporaryDirectory(prefix="vcritic-hostile-") as tmp:
        folder = Path(tmp)
        bomb = folder / "bomb.xlsx"
        chunk = bytes(16 << 20)
        with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("[Content_Types].xml", "<Types/>")
            with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as member:
                for _ in range(MAX_XLSX_EXPANDED // len(chunk) + 1):
                    member.write(chunk)
        print(f"workbook: {bomb.stat().st_size / 2**20:.1f} MiB on disk")
        _refused("zip-bomb workbook", lambda: read_xlsx_rows(bomb, "scores"))

        dialogues = folder / "dialogues.jsonl"
        record = {"question": "quality", "task": "quality", "images": ["a.png"], "instruction": "x" * 5_000_000,
                  "answer": QUALITY.answer(" good")}  # fmt: skip
        dialogues.write_text(json.dumps(record) + "\n")
        _refused("5 MB instruction", lambda: list(read_dialogues(dialogues)))

        table = folder / "manifest.csv"
        with table.open("wb") as handle:
            handle.write(b"path,mos\n")
            handle.truncate(MAX_TABLE_BYTES + 1)  # sparse: no disk space used
        from vcritic.datasets.manifest import load_manifest

        _refused("oversized CSV manifest", lambda: load_manifest(table))


if __name__ == "__main__":
    main()
