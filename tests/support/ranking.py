"""What every ranking CSV (``vcritic rank``) promises, checked: its columns, ranks 1..n best first, sane numbers."""

from __future__ import annotations

COLUMNS = ["rank", "path", "strength", "se", "comparisons", "win_rate", "error"]


def check_ranked(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The ranked rows, checked for what every ranking CSV promises: ranks 1..n best first, sane numbers."""
    ranked = [row for row in rows if not row["error"]]
    assert list(rows[0]) == COLUMNS
    assert [int(row["rank"]) for row in ranked] == list(range(1, len(ranked) + 1))
    strengths = [float(row["strength"]) for row in ranked]
    assert strengths == sorted(strengths, reverse=True)
    assert abs(sum(strengths)) < 1e-3  # centred (4 decimals written)
    assert all(float(row["se"]) > 0 and 0 <= float(row["win_rate"]) <= 1 for row in ranked)
    assert rows[len(ranked) :] == [row for row in rows if row["error"]]  # error rows last
    return ranked
