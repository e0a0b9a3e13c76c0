"""scripts/test_budget.py, CI's check of the test tiers' time, on synthetic pytest reports over and under budget."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test_budget.py"


@pytest.fixture(scope="module")
def budget():
    spec = importlib.util.spec_from_file_location("test_budget_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def write_report(path: Path, cases: list[tuple[str, str, float]]) -> Path:
    """A junit XML report in pytest's layout: (classname, name, seconds) per test case."""
    rows = "".join(f'<testcase classname="{c}" name="{n}" time="{t}" />' for c, n, t in cases)
    suite = f'<testsuite name="pytest" tests="{len(cases)}">{rows}</testsuite>'
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?><testsuites>{suite}</testsuites>')
    return path


CASES = [
    ("tests.unit.test_metrics", "test_known_values", 0.5),
    ("tests.unit.test_metrics", "test_logistic_fit_recovers_a_known_curve", 1.5),
    ("tests.integration.test_families", "test_compare_is_symmetric[llava]", 20.0),
    ("tests.e2e.test_serve", "test_health_answers_503_while_loading_then_200", 40.0),
]


def test_a_run_within_its_budgets_passes_and_names_the_slowest_tests(budget, tmp_path, capsys):
    report = write_report(tmp_path / "r.xml", CASES)
    assert budget.main([str(report), "--budget", "unit=60", "--budget", "total=100", "--slowest", "2"]) == 0
    err = capsys.readouterr().err
    assert "unit: 2 tests, 2.0 s (budget 60 s)" in err
    assert "integration: 1 tests, 20.0 s" in err and "e2e: 1 tests, 40.0 s" in err
    assert "total: 4 tests, 62.0 s (budget 100 s)" in err
    slowest = err[err.index("the 2 slowest tests:") :].splitlines()[1:]
    assert [line.split()[-1] for line in slowest] == [
        "tests/e2e/test_serve.py::test_health_answers_503_while_loading_then_200",
        "tests/integration/test_families.py::test_compare_is_symmetric[llava]",
    ]


def test_over_the_budget_within_the_margin_is_reported_not_failed(budget, tmp_path, capsys):
    report = write_report(tmp_path / "r.xml", CASES)
    assert budget.main([str(report), "--budget", "total=50"]) == 0  # 62 s: over 50, under 75
    assert "total: 4 tests, 62.0 s (budget 50 s): over the budget, within the margin" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "over"), [("unit=1", "unit: 2 tests, 2.0 s"), ("total=40", "total: 4 tests")], ids=["unit", "total"]
)
def test_a_tier_more_than_one_and_a_half_times_over_fails(budget, tmp_path, capsys, flag, over):
    report = write_report(tmp_path / "r.xml", CASES)
    assert budget.main([str(report), "--budget", flag]) == 1
    err = capsys.readouterr().err
    assert over in err and "OVER 1.5x the budget" in err and "slowest tests" in err


def test_classes_and_tests_outside_a_tier(budget, tmp_path):
    report = write_report(
        tmp_path / "r.xml", [("tests.unit.test_x.TestGroup", "test_a", 1.0), ("tests.test_old", "test_b", 2.0)]
    )
    timings = budget.read_report(str(report))
    assert [(t.test, t.tier) for t in timings] == [
        ("tests/unit/test_x.py::test_a", "unit"),
        ("tests/test_old.py::test_b", "other"),
    ]
    assert budget.tier_totals(timings) == {"unit": (1, 1.0), "other": (1, 2.0), "total": (2, 3.0)}


def test_bad_arguments_and_unreadable_reports(budget, tmp_path, capsys):
    with pytest.raises(SystemExit):
        budget.main([str(tmp_path / "r.xml"), "--budget", "fast=10"])
    assert "expected TIER=SECONDS" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        budget.main([str(tmp_path / "r.xml"), "--budget", "unit=soon"])
    assert "'soon' is not a number of seconds" in capsys.readouterr().err
    assert budget.main([str(tmp_path / "missing.xml")]) == 2
    (tmp_path / "torn.xml").write_text("<testsuites><testsuite>")
    assert budget.main([str(tmp_path / "torn.xml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_budget_checks_a_real_pytest_report(budget, tmp_path):
    """pytest's own --junitxml layout (classname from the file path) gives the tier, as the synthetic reports say."""
    folder = tmp_path / "tests" / "unit"
    folder.mkdir(parents=True)
    (folder / "test_tiny.py").write_text("def test_one():\n    pass\n")
    report = tmp_path / "r.xml"
    args = ["tests/unit/test_tiny.py", f"--junitxml={report}", "-q", "-p", "no:cacheprovider"]
    run = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=tmp_path, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stdout
    timings = budget.read_report(str(report))
    assert [(t.test, t.tier) for t in timings] == [("tests/unit/test_tiny.py::test_one", "unit")]
