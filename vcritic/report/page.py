"""The report page: one self-contained HTML file (inline CSS and SVG, thumbnails as data URIs, no script).

Every path and text from the input is escaped with :func:`_text`; a Content-Security-Policy that allows no script
and no network is a second line of defence.
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Sequence

from vcritic.readout.schema import ATTRIBUTES
from vcritic.report import svg
from vcritic.report.inputs import BenchRun, Row, Table
from vcritic.report.thumbnails import MAX_IMAGES, THUMBNAIL_SIZE, make_thumbnail, resolve_image

MAX_FAILED_LISTED = 200  # rows without a score listed by name; the rest are counted
MAX_SCATTER_POINTS = 5000  # per dataset; beyond it an evenly spaced subset (FLIVE has ~40k images)

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.note{color:#666}.grid{display:flex;flex-wrap:wrap;gap:10px}
.card{width:{size}px;margin:0;font-size:12px;border:1px solid #ddd;padding:4px;background:#fafafa}
.card img{display:block;max-width:{size}px;max-height:{size}px;margin:auto}
.missing{width:{size}px;height:{size}px;display:flex;align-items:center;justify-content:center;text-align:center;
background:#eee;color:#a33;font-size:11px;overflow:hidden}
.path{color:#555;word-break:break-all}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}td.text,th.text{text-align:left;word-break:break-all}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
LABELS = {"mos": "MOS", "p_ai_generated": "P(AI-generated)", "strength": "strength"}


def _text(value: object) -> str:
    """HTML-escaped; control characters shown as \\xNN and undecodable bytes of a file name (surrogates) as \\udcNN,
    so a path that holds one is still recognisable and the page is valid UTF-8."""
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    shown = "".join(c if (c >= " " and c != "\x7f") or c == "\t" else f"\\x{ord(c):02x}" for c in text)
    return html.escape(shown, quote=True)


def _label(column: str) -> str:
    return LABELS.get(column, column)


def _format(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def render(data: Table | BenchRun, *, max_images: int = MAX_IMAGES, thumbnail_size: int = THUMBNAIL_SIZE) -> str:
    """The whole page for a scores CSV, a ranking CSV or a bench folder."""
    if isinstance(data, BenchRun):
        title, body = f"vcritic bench report: {data.source.name}", _bench(data)
    else:
        what = "scores" if data.kind == "scores" else "ranking"
        title = f"vcritic {what} report: {data.source.name}"
        body = _table(data, max_images, thumbnail_size)
    from vcritic import __version__

    style = STYLE.replace("{size}", str(thumbnail_size))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{style}</style></head><body>\n"
        f"<h1>{_text(title)}</h1>\n{body}\n"
        f'<p class="note">Made by vcritic {_text(__version__)} report.</p>\n</body></html>\n'
    )


# -- scores and ranking CSVs -------------------------------------------------------------------------------------
def _table(table: Table, max_images: int, size: int) -> str:
    from vcritic.base.images import image_extensions

    image_extensions()  # registers the HEIC/HEIF opener where pillow-heif is installed
    ranked, failed = table.ranked, table.failed
    key = table.key
    values = [row.values[key] for row in ranked]
    parts = [f'<p>From <code class="path">{_text(table.source)}</code>: {len(table.rows)} row(s), '
             f"{len(ranked)} with a {_text(_label(key))}, {len(failed)} without.</p>"]  # fmt: skip
    if values:
        parts.append(
            f"<p>{_text(_label(key))}: mean {_format(statistics.fmean(values), 2)}, median "
            f"{_format(statistics.median(values), 2)}, min {_format(min(values), 2)}, max {_format(max(values), 2)}"
            + (" (0-100, higher is better)" if key == "mos" else "")
            + ".</p>"
        )
        parts.append(f"<h2>Distribution of {_text(_label(key))}</h2>")
        if table.kind == "ranking":
            low, high = math.floor(min(values)), math.ceil(max(values))
            high = high if high > low else low + 1
        else:
            low, high = (0.0, 1.0) if key == "p_ai_generated" else (0.0, 100.0)
        parts.append(svg.histogram(values, low=low, high=high, x_label=_label(key)))
    if table.kind == "scores":
        order = f"sorted by {_label(key)}, highest first" + ("" if key == "mos" else " (the file has no mos column)")
    else:
        order = "by rank, best first"
    if ranked and not max_images:
        parts.append(f'<p class="note">{len(ranked)} image(s) not shown (--max-images 0).</p>')
    elif ranked and len(ranked) <= 2 * max_images:
        parts.append(f"<h2>All {len(ranked)} images, {_text(order)}</h2>")
        parts.append(_cards(table, list(enumerate(ranked, start=1)), size))
    elif ranked:
        left_out = len(ranked) - 2 * max_images
        parts.append(f"<h2>Best {max_images} images, {_text(order)}</h2>")
        parts.append(_cards(table, list(enumerate(ranked[:max_images], start=1)), size))
        parts.append(f'<p class="note">{left_out} image(s) in the middle are left out of this page '
                     f"(--max-images {max_images}: the best and the worst {max_images}).</p>")  # fmt: skip
        parts.append(f"<h2>Worst {max_images} images</h2>")
        start = len(ranked) - max_images + 1
        parts.append(_cards(table, list(enumerate(ranked[-max_images:], start=start)), size))
    if failed:
        parts.append(_failed(table, failed))
    return "\n".join(parts)


def _cards(table: Table, rows: Sequence[tuple[int, Row]], size: int) -> str:
    cards = []
    for place, row in rows:
        thumbnail = make_thumbnail(resolve_image(row.path, table.source.parent), size)
        if thumbnail.uri is not None:
            picture = f'<img src="{thumbnail.uri}" alt="{_text(row.path)}">'
        else:
            picture = f'<div class="missing" title="{_text(thumbnail.error)}">{_text(thumbnail.error)}</div>'
        cards.append(f'<figure class="card">{picture}<figcaption><b>#{place}</b> {_caption(table, row)}<br>'
                     f'<span class="path">{_text(row.path)}</span></figcaption></figure>')  # fmt: skip
    return '<div class="grid">' + "\n".join(cards) + "</div>"


def _caption(table: Table, row: Row) -> str:
    v = row.values
    if table.kind == "ranking":
        text = f"strength {_format(v.get('strength'), 3)} ± {_format(v.get('se'), 3)}"
        if v.get("comparisons") is not None:
            text += f", {int(v['comparisons'])} comparisons"
        if v.get("win_rate") is not None:
            text += f", win rate {_format(v['win_rate'], 2)}"
        return _text(text)
    lines = []
    if v.get("mos") is not None:
        spread = v.get("mos_std")
        lines.append(f"MOS {_format(v['mos'])}" + (f" ± {_format(spread)}" if spread is not None else ""))
    attributes = [f"{name} {_format(v[name])}" for name in ATTRIBUTES if v.get(name) is not None]
    if attributes:
        lines.append(", ".join(attributes))
    if v.get("p_ai_generated") is not None:
        lines.append(f"P(AI-generated) {_format(v['p_ai_generated'], 3)}")
    return "<br>".join(_text(line) for line in lines)


def _failed(table: Table, failed: Sequence[Row]) -> str:
    what = "scored" if table.kind == "scores" else "ranked"
    parts = [f"<h2>Not {what} ({len(failed)})</h2>",
             '<table><tr><th>line</th><th class="text">path</th><th class="text">error</th></tr>']  # fmt: skip
    for row in failed[:MAX_FAILED_LISTED]:
        reason = row.error or f"no {_label(table.key)}"
        parts.append(f'<tr><td>{row.line}</td><td class="text">{_text(row.path)}</td>'
                     f'<td class="text">{_text(reason)}</td></tr>')  # fmt: skip
    parts.append("</table>")
    if len(failed) > MAX_FAILED_LISTED:
        parts.append(f'<p class="note">{len(failed) - MAX_FAILED_LISTED} more not listed; see the error column of '
                     f"the CSV.</p>")  # fmt: skip
    return "\n".join(parts)


# -- bench folders -----------------------------------------------------------------------------------------------
def _dict(value: object) -> dict:
    """A metrics.json entry that should be an object; anything else (a hand-edited file) counts as empty."""
    return value if isinstance(value, dict) else {}


def _number(value: object, digits: int = 3) -> str:
    return _format(value, digits) if isinstance(value, int | float) else "-"


def _bench(run: BenchRun) -> str:
    parts = [f'<p>From <code class="path">{_text(run.source)}</code>: {len(run.datasets)} dataset(s).</p>',
             "<h2>MOS: correlation with the ground truth</h2>",
             '<table><tr><th class="text">dataset</th><th class="text">split</th><th>images scored</th>'
             "<th>SRCC</th><th>PLCC</th><th>PLCC (logistic)</th><th>KRCC</th><th>pair ranking, A-B scores</th>"
             "<th>pair ranking, direct</th><th>paper SRCC/PLCC</th></tr>"]  # fmt: skip
    for dataset in run.datasets:
        m = dataset.metrics
        mos, pairs, paper = _dict(m.get("mos")), _dict(m.get("pair_ranking")), _dict(m.get("paper"))
        paper_text = (f"{_number(paper.get('srcc'))}/{_number(paper.get('plcc'))}"
                      if paper.get("srcc") is not None else "-")  # fmt: skip
        parts.append(
            f'<tr><td class="text">{_text(m.get("title", dataset.name))}</td><td class="text">'
            f"{_text(m.get('split', '-'))}</td><td>{_text(m.get('n_scored', '-'))} of {_text(m.get('n_images', '-'))}"
            f"</td><td>{_number(mos.get('srcc'))}</td><td>{_number(mos.get('plcc'))}</td>"
            f"<td>{_number(mos.get('plcc_logistic'))}</td><td>{_number(mos.get('krcc'))}</td>"
            f"<td>{_number(pairs.get('score_difference'))}</td><td>{_number(pairs.get('direct'))}</td>"
            f"<td>{_text(paper_text)}</td></tr>"
        )
    parts.append("</table>")
    parts.append(_attribute_table(run))
    for dataset in run.datasets:
        parts.append(_scatter(dataset))
    return "\n".join(parts)


def _attribute_table(run: BenchRun) -> str:
    rows = []
    for dataset in run.datasets:
        m = dataset.metrics
        cells = []
        for name, result in _dict(m.get("attributes")).items():
            if isinstance(result, dict) and result.get("available"):
                cells.append(f"{name} {_number(result.get('srcc'))}/{_number(result.get('plcc'))}")
        authenticity = _dict(m.get("authenticity"))
        if authenticity.get("available") and isinstance(authenticity.get("accuracy"), int | float):
            cells.append(f"authenticity accuracy {_format(100 * authenticity['accuracy'], 1)}%")
        if cells:
            rows.append(f'<tr><td class="text">{_text(m.get("title", dataset.name))}</td>'
                        f'<td class="text">{_text("; ".join(cells))}</td></tr>')  # fmt: skip
    if not rows:
        return ""
    return ("<h2>Attributes (SRCC/PLCC) and authenticity</h2>"
            '<table><tr><th class="text">dataset</th><th class="text">results</th></tr>'
            + "".join(rows) + "</table>")  # fmt: skip


def _scatter(dataset) -> str:
    m = dataset.metrics
    title = m.get("title", dataset.name)
    head = f"<h2>{_text(title)}: predicted MOS against ground truth</h2>"
    if dataset.predictions is None:
        return head + '<p class="note">No predictions.csv in its folder: nothing to plot.</p>'
    points = dataset.points
    if not points:
        return head + '<p class="note">predictions.csv has no scored row: nothing to plot.</p>'
    note = ""
    if len(points) > MAX_SCATTER_POINTS:
        step = len(points) / MAX_SCATTER_POINTS
        note = (f'<p class="note">{MAX_SCATTER_POINTS} of {len(points)} images plotted (every '
                f"{step:.1f}th row of predictions.csv).</p>")  # fmt: skip
        points = [points[int(k * step)] for k in range(MAX_SCATTER_POINTS)]
    curve = _logistic(_dict(m.get("mos")).get("logistic"))
    plot = svg.scatter([p for p, _ in points], [t for _, t in points], x_label="predicted MOS",
                       y_label="ground-truth MOS (0-100)", curve=curve)  # fmt: skip
    legend = '<p class="note">Red: the fitted 4-parameter logistic (PLCC (logistic)).</p>' if curve else ""
    return head + plot + note + legend


def _logistic(params):
    """metrics.logistic4 with the parameters metrics.json holds, or None where there are none."""
    if not (isinstance(params, list) and len(params) == 4 and all(isinstance(p, int | float) for p in params)):
        return None
    from vcritic.evaluation.metrics import logistic4

    return lambda x: float(logistic4(x, *params))
