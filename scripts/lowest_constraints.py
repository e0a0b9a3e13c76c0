"""Print pip constraints that pin every direct dependency to the lowest version pyproject.toml allows.

CI installs with them (``scripts/test-lowest``) to prove the declared lower bounds. torch and torchvision are
left out: CI pins the pair it ships with. Usage: python scripts/lowest_constraints.py [pyproject.toml] > lowest.txt
With ``--torch``: only the torch and torchvision floors, as pins (``scripts/test-lowest`` with LOWEST_TORCH=1).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PINNED_ELSEWHERE = {"torch", "torchvision"}
EXTRAS = ("test",)  # what the test run installs besides the core dependencies


def torch_floor(pyproject: Path) -> list[str]:
    """torch and torchvision at the lowest versions pyproject.toml allows, as pins."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    pins = []
    for requirement in project["dependencies"]:
        match = re.match(r"\s*(torch|torchvision)\s*>=\s*([^,;\s]+)", requirement)
        if match:
            pins.append(f"{match.group(1)}=={match.group(2)}")
    if len(pins) != 2:
        sys.exit("pyproject.toml must give torch and torchvision a lower bound (>=)")
    return pins


def lowest_pins(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in EXTRAS:
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    pins: dict[str, str] = {}
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)", requirement)
        name, specifiers = match.group(1).lower().replace("_", "-"), match.group(2)
        lowest = re.search(r">=\s*([^,;\s]+)", specifiers)
        if name in PINNED_ELSEWHERE:
            continue
        if lowest is None:
            sys.exit(f"{requirement!r} has no lower bound: add one (>=) so the lowest-versions run can test it")
        pins.setdefault(name, lowest.group(1))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--torch"]
    path = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "pyproject.toml"
    print("\n".join(torch_floor(path) if "--torch" in sys.argv[1:] else lowest_pins(path)))
