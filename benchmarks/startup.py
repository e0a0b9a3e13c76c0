"""Start-up cost of ``vcritic --help``: time spent importing, and what gets imported.

Runs ``python -X importtime -m vcritic --help`` in fresh processes and prints, over ``--runs`` runs, the fastest and
the median total import time (the sum of the top-level imports' cumulative times: the interpreter's own start-up,
site and vcritic with everything it pulls in), how many vcritic modules were imported, whether torch, numpy,
transformers or PIL were, and the slowest top-level imports of the fastest run. The fastest run is the figure to
compare: on a shared machine the others measure the neighbours.

    python benchmarks/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "numpy", "transformers", "PIL")


def one_run() -> tuple[float, dict[str, int], list[str]]:
    """Total import seconds, top-level imports' cumulative microseconds, and every module name imported."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "vcritic", "--help"], capture_output=True,
                            text=True, env=env, cwd=root, check=True)  # fmt: skip
    top: dict[str, int] = {}
    names = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        names.append(name.strip())
        if not name.startswith("  "):  # a top-level import: its cumulative time holds its children's
            top[name.strip()] = int(cumulative)
    return sum(top.values()) / 1e6, top, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    totals = [total for total, _, _ in runs]
    best_total, best_top, names = min(runs, key=lambda run: run[0])
    ours = sorted({name for name in names if name == "vcritic" or name.startswith("vcritic.")})
    heavy = [lib for lib in HEAVY if any(name == lib or name.startswith(f"{lib}.") for name in names)]
    print(f"vcritic --help: import time {best_total:.3f} s fastest, {statistics.median(totals):.3f} s median "
          f"({args.runs} runs)")  # fmt: skip
    print(f"modules imported: {len(set(names))} in all, {len(ours)} of vcritic")
    print(f"torch/numpy/transformers/PIL imported: {', '.join(heavy) or 'none'}")
    print("slowest top-level imports (fastest run):")
    for name, micros in sorted(best_top.items(), key=lambda item: -item[1])[:8]:
        print(f"  {micros / 1e6:.3f} s  {name}")


if __name__ == "__main__":
    main()
