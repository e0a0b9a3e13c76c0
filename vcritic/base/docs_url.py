"""Where the documentation lives, so error hints and ``--help`` can send an installed user (who has no README) to a
page. One constant: change it here when the site moves."""

from __future__ import annotations

# Placeholder until the project's site is published; the pages are docs/*.md in the repository (mkdocs.yml).
DOCS_URL = "https://vcritic.readthedocs.io/en/latest/"


def docs_page(page: str, anchor: str | None = None) -> str:
    """The address of a docs page, e.g. ``docs_page("guides/benchmarks", "getting-the-datasets")``."""
    address = f"{DOCS_URL}{page.strip('/')}/"
    return f"{address}#{anchor}" if anchor else address
