"""The docs an installed user is sent to: every page and anchor that a hint or --help names exists in docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vcritic.base.docs_url import DOCS_URL, docs_page

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _slug(heading: str) -> str:
    """The anchor mkdocs' toc extension gives a heading (its default slugify: lower case, words joined by -)."""
    text = re.sub(r"[`*]", "", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[\s-]+", "-", text).strip("-")


def _references() -> list[tuple[str, str | None]]:
    found = []
    for path in (ROOT / "vcritic").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for page, anchor in re.findall(r"docs_page\(\s*[\"']([^\"']+)[\"'](?:\s*,\s*[\"']([^\"']+)[\"'])?", text):
            found.append((page, anchor or None))
    return found


def test_docs_page_builds_the_address():
    assert docs_page("guides/benchmarks") == f"{DOCS_URL}guides/benchmarks/"
    assert docs_page("/guides/benchmarks/", "getting-the-datasets").endswith("guides/benchmarks/#getting-the-datasets")


def test_no_hint_or_help_sends_users_to_the_readme():
    for path in (ROOT / "vcritic").rglob("*.py"):
        if path.name == "docs_url.py":
            continue
        assert "README" not in path.read_text(encoding="utf-8"), path


@pytest.mark.parametrize(("page", "anchor"), sorted(set(_references()), key=str))
def test_every_named_page_and_anchor_exists(page, anchor):
    source = DOCS / f"{page}.md"
    assert source.is_file(), f"docs/{page}.md"
    if anchor:
        headings = re.findall(r"^#+ (.+)$", source.read_text(encoding="utf-8"), re.M)
        assert anchor in {_slug(h) for h in headings}, f"docs/{page}.md#{anchor}"


def test_the_references_were_found():
    assert len(set(_references())) >= 3  # the scan above is not vacuous


def test_the_licence_is_apache_2_as_pyproject_declares_and_goes_into_the_packages():
    import hashlib

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    # The Apache License 2.0 exactly as apache.org serves it (LICENSE-2.0.txt), not an edited copy.
    digest = hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest()
    assert digest == "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    # PEP 639: a license expression excludes License :: classifiers, and needs setuptools 77 to build.
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]
    assert pyproject["build-system"]["requires"] == ["setuptools>=77"]
