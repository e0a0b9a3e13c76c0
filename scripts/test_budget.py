#!/usr/bin/env python3
"""Check a test run's time against its budgets, from pytest's own timing (a --junitxml report).

Usage: python3 scripts/test_budget.py REPORT.xml --budget unit=60 --budget total=510 [--slowest 10]

Each test's time (setup, call and teardown, as pytest measured it) counts towards its tier, the folder under tests/
it lives in (unit, integration, e2e), and towards ``total``. A tier over its budget is reported; one more than
1.5 times over fails (exit 1), so a busy machine's noise does not fail CI but a real slowdown does. The slowest tests
are printed either way. Standard library only: CI runs it with the system python3.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass

TIERS = ("unit", "integration", "e2e")
FAIL_FACTOR = 1.5


@dataclass(frozen=True)
class Timing:
    test: str  # tests/unit/test_x.py::test_y, as pytest names it
    tier: str
    seconds: float


def read_report(path: str) -> list[Timing]:
    """Every test case in a junit XML report written by pytest, with its tier and time."""
    timings = []
    for case in ET.parse(path).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")
        tier = next((part for part in parts if part in TIERS), "other")
        # classname is the module path with dots (then a class, if any): tests.unit.test_x[.TestClass]
        module = [p for p in parts if not p[:1].isupper()]
        test = "/".join(module) + ".py::" + case.get("name", "?")
        timings.append(Timing(test, tier, float(case.get("time") or 0.0)))
    return timings


def tier_totals(timings: list[Timing]) -> dict[str, tuple[int, float]]:
    """tier -> (number of tests, seconds), plus "total" for the whole run."""
    totals: dict[str, tuple[int, float]] = {}
    for t in timings:
        for key in (t.tier, "total"):
            count, seconds = totals.get(key, (0, 0.0))
            totals[key] = (count + 1, seconds + t.seconds)
    return totals


def check(timings: list[Timing], budgets: dict[str, float], slowest: int = 10) -> tuple[bool, list[str]]:
    """(whether every tier is within FAIL_FACTOR of its budget, the lines to print)."""
    totals = tier_totals(timings)
    ok, lines = True, []
    for tier in (*TIERS, "other", "total"):
        if tier not in totals:
            continue
        count, seconds = totals[tier]
        line = f"{tier}: {count} tests, {seconds:.1f} s"
        budget = budgets.get(tier)
        if budget is not None:
            line += f" (budget {budget:g} s)"
            if seconds > FAIL_FACTOR * budget:
                ok = False
                line += f": OVER {FAIL_FACTOR:g}x the budget"
            elif seconds > budget:
                line += ": over the budget, within the margin"
        lines.append(line)
    missing = sorted(set(budgets) - set(totals))
    if missing:
        lines.append(f"no tests ran in: {', '.join(missing)}")
    if slowest:
        lines.append(f"the {min(slowest, len(timings))} slowest tests:")
        for t in sorted(timings, key=lambda t: t.seconds, reverse=True)[:slowest]:
            lines.append(f"  {t.seconds:7.1f} s  {t.test}")
    return ok, lines


def parse_budget(text: str) -> tuple[str, float]:
    tier, sep, seconds = text.partition("=")
    if not sep or tier not in (*TIERS, "total"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected TIER=SECONDS, TIER one of {', '.join(TIERS)}, total")
    try:
        return tier, float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {seconds!r} is not a number of seconds") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="pytest --junitxml report")
    parser.add_argument("--budget", type=parse_budget, action="append", default=[], metavar="TIER=SECONDS")
    parser.add_argument("--slowest", type=int, default=10, help="how many of the slowest tests to print")
    args = parser.parse_args(argv)
    try:
        timings = read_report(args.report)
    except (OSError, ET.ParseError) as exc:
        print(f"test budget: cannot read {args.report}: {exc}", file=sys.stderr)
        return 2
    ok, lines = check(timings, dict(args.budget), args.slowest)
    for line in lines:
        print(f"test budget: {line}", file=sys.stderr)
    if not ok:
        print("test budget: a tier took more than 1.5x its budget: look at the slowest tests above", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
