"""Plots as inline SVG, drawn here so a report needs no plotting library and works offline.

Every string that goes into the markup passes through :func:`_text`, so the SVG is well-formed XML whatever a label
holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape, quoteattr

WIDTH, HEIGHT = 560, 300
MARGIN = {"left": 56, "right": 16, "top": 16, "bottom": 44}
SVG_OPEN = (
    '<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
    'font-family="sans-serif" font-size="11">'
)


def _text(value: object) -> str:
    """Escaped for XML, control characters (not allowed in XML 1.0) replaced."""
    text = "".join(c if c >= " " or c in "\t\n" else "\ufffd" for c in str(value))
    return escape(text)


def _number(value: float) -> str:
    return f"{value:.1f}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = math.ceil(low / step - 1e-9) * step
    return [first + k * step for k in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-9 else "0"


class _Frame:
    """Data coordinates to pixels, and the axes drawn around them."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float], width: int, height: int):
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.width, self.height = width, height
        self.left, self.right = MARGIN["left"], width - MARGIN["right"]
        self.top, self.bottom = MARGIN["top"], height - MARGIN["bottom"]

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * (self.right - self.left)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.bottom - (value - self.y0) / span * (self.bottom - self.top)

    def axes(self, x_label: str, y_label: str, y_ticks: Sequence[float] | None = None) -> list[str]:
        parts = [f'<rect x="{self.left}" y="{self.top}" width="{self.right - self.left}" '
                 f'height="{self.bottom - self.top}" fill="none" stroke="#999"/>']  # fmt: skip
        for tick in _ticks(self.x0, self.x1):
            x = _number(self.x(tick))
            parts.append(f'<line x1="{x}" y1="{self.bottom}" x2="{x}" y2="{self.bottom + 4}" stroke="#999"/>')
            parts.append(f'<text x="{x}" y="{self.bottom + 16}" text-anchor="middle">{_text(_label(tick))}</text>')
        for tick in y_ticks if y_ticks is not None else _ticks(self.y0, self.y1):
            y = _number(self.y(tick))
            parts.append(f'<line x1="{self.left - 4}" y1="{y}" x2="{self.left}" y2="{y}" stroke="#999"/>')
            parts.append(
                f'<text x="{self.left - 6}" y="{y}" text-anchor="end" dy="0.35em">{_text(_label(tick))}</text>'
            )
        middle = (self.left + self.right) / 2
        parts.append(f'<text x="{_number(middle)}" y="{self.height - 8}" text-anchor="middle">{_text(x_label)}</text>')
        centre = _number((self.top + self.bottom) / 2)
        parts.append(f'<text x="14" y="{centre}" text-anchor="middle" transform="rotate(-90 14 {centre})">'
                     f"{_text(y_label)}</text>")  # fmt: skip
        return parts


def histogram(
    values: Sequence[float],
    *,
    low: float,
    high: float,
    bins: int = 20,
    x_label: str,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Counts of ``values`` in ``bins`` equal bins over [low, high] (values outside go to the end bins)."""
    counts = [0] * bins
    for value in values:
        k = int((value - low) / (high - low) * bins) if high > low else 0
        counts[min(max(k, 0), bins - 1)] += 1
    top = max(counts, default=0) or 1
    ticks = [t for t in _ticks(0, top) if t == int(t)]
    frame = _Frame((low, high), (0, top), width, height)
    parts = [SVG_OPEN.format(w=width, h=height)]
    step = (high - low) / bins
    for k, count in enumerate(counts):
        if not count:
            continue
        x, x_end = frame.x(low + k * step), frame.x(low + (k + 1) * step)
        y = frame.y(count)
        parts.append(
            f'<rect x="{_number(x + 0.5)}" y="{_number(y)}" width="{_number(max(x_end - x - 1, 0.5))}" '
            f'height="{_number(frame.bottom - y)}" fill="#4a7fb5"><title>{_text(_label(low + k * step))}-'
            f"{_text(_label(low + (k + 1) * step))}: {count}</title></rect>"
        )
    parts += frame.axes(x_label, "images", ticks)
    parts.append("</svg>")
    return "".join(parts)


def scatter(
    x: Sequence[float],
    y: Sequence[float],
    *,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] = (0.0, 100.0),
    curve: Callable[[float], float] | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Points (x, y), and ``curve`` (e.g. the fitted logistic) drawn over the x range where given."""
    if x_range is None:
        low, high = min(x, default=0.0), max(x, default=100.0)
        low, high = min(low, 0.0), max(high, 100.0)  # keep the 0-100 scale in view, and what falls outside it
        x_range = (low, high)
    frame = _Frame(x_range, y_range, width, height)
    parts = [SVG_OPEN.format(w=width, h=height)]
    parts.append('<g fill="#4a7fb5" fill-opacity="0.55">')
    for a, b in zip(x, y, strict=True):
        parts.append(f'<circle cx="{_number(frame.x(a))}" cy="{_number(frame.y(b))}" r="2.5"/>')
    parts.append("</g>")
    if curve is not None:
        points = []
        for k in range(101):
            value = frame.x0 + (frame.x1 - frame.x0) * k / 100
            fitted = curve(value)
            if math.isfinite(fitted):
                clipped = min(max(fitted, frame.y0), frame.y1)
                points.append(f"{_number(frame.x(value))},{_number(frame.y(clipped))}")
        if len(points) > 1:
            parts.append(f'<polyline points={quoteattr(" ".join(points))} fill="none" stroke="#c0392b" '
                         'stroke-width="1.5"/>')  # fmt: skip
    parts += frame.axes(x_label, y_label)
    parts.append("</svg>")
    return "".join(parts)
