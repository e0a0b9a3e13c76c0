"""The tests' own layout (docs/development/tests.md): every test file in a tier folder, the unit tier without a model,
shared helpers imported from the support package, never from conftest or another test file."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "e2e")
# What loads or builds a model: a unit test uses none of these.
MODEL_NAMES = {"tiny_models", "tiny_llava", "build_tiny", "build_learner", "load_critic", "Critic"}


def _test_files() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def test_every_test_file_is_in_a_tier_folder():
    outside = [str(p.relative_to(TESTS)) for p in _test_files() if p.relative_to(TESTS).parts[0] not in TIERS]
    assert outside == [], "move these into tests/unit, tests/integration or tests/e2e"
    assert not list((TESTS / "support").glob("test_*.py")), "support holds helpers, not tests"


def test_test_file_names_are_unique_across_the_tiers():
    """Test modules are imported by their file name (the folders are no packages): two of one name would clash."""
    names = [p.name for p in _test_files()]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_tests_import_helpers_from_support_not_from_conftest_or_other_tests():
    wrong = []
    for path in [*_test_files(), *TESTS.glob("support/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            wrong += [f"{path.relative_to(TESTS)}: {n}" for n in names if n == "conftest" or n.startswith("test_")]
    assert wrong == []


def test_unit_tests_load_no_model():
    found = []
    for path in sorted((TESTS / "unit").glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.id if isinstance(node, ast.Name) else node.arg if isinstance(node, ast.arg) else None
            if name in MODEL_NAMES:
                found.append(f"{path.name}:{node.lineno}: {name}")
    assert found == [], "a test with a model belongs in tests/integration (or tests/e2e)"
