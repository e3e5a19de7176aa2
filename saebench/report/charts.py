"""Small inline SVG charts: scatter-with-lines, line and bar charts.

Inline SVG in HTML needs no namespace attribute, so the page holds no URL at all. Hand-written
instead of an embedded plotting library (Plotly's offline bundle is ~3.5 MB): every
mark carries an SVG <title>, which every browser shows on hover (method, knob, seed, value)
without any JavaScript, so the charts work in a page opened with JS off and add a few KB each.
All text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

# tab10, the matplotlib/seaborn default the PNG plots use, so colours read the same in both.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
WIDTH, HEIGHT = 440, 280
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 58, 12, 26, 40


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    tip: str  # the hover text


@dataclass(frozen=True)
class Series:
    """One method's marks: points (each with a tooltip) and a line through `line`."""

    name: str
    color: str
    points: Sequence[Point] = ()
    line: Sequence[tuple[float, float]] = ()
    dashed: bool = False
    tip: str = ""  # hover text of the line


@dataclass
class Axis:
    """Maps data values to pixels on one axis (linear, or log with base `log`)."""

    low: float
    high: float
    start: float  # pixel of `low`
    end: float  # pixel of `high`
    log: float | None = None
    ticks: list[float] = field(default_factory=list)

    def _t(self, value: float) -> float:
        return math.log(value, self.log) if self.log else value

    def __call__(self, value: float) -> float:
        low, high = self._t(self.low), self._t(self.high)
        span = (high - low) or 1.0
        return self.start + (self._t(value) - low) / span * (self.end - self.start)


def color_of(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def fmt(value: float) -> str:
    """A number as charts and tooltips print it: 3 significant digits."""
    if value != value:
        return "n/a"
    return f"{value:.3g}"


def _finite(values: Sequence[float], positive: bool) -> list[float]:
    return [v for v in values if math.isfinite(v) and (v > 0 or not positive)]


def nice_ticks(low: float, high: float, n: int = 5) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 × a power of ten)."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(n - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while True:  # up to the first tick at or above `high`: the axis covers every value
        ticks.append(round(value, 12))
        if value >= high - step * 1e-9:
            return ticks
        value += step


def log_ticks(low: float, high: float, base: float) -> list[float]:
    first, last = math.floor(math.log(low, base)), math.ceil(math.log(high, base))
    ticks = [base**e for e in range(first, last + 1)]
    while len(ticks) > 8:  # keep labels apart on wide ranges
        ticks = ticks[::2]
    return ticks


def make_axis(values: Sequence[float], start: float, end: float, log: float | None) -> Axis:
    finite = _finite(values, positive=log is not None)
    if log is not None and finite:
        low, high = min(finite), max(finite)
        ticks = log_ticks(low, high, log)
        return Axis(min(ticks[0], low), max(ticks[-1], high), start, end, log, ticks)
    finite = finite or [0.0, 1.0]
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.06 or abs(high) * 0.1 or 1.0
    # A non-negative quantity (a count, a fraction, FVU) never gets an axis below zero.
    ticks = nice_ticks(max(low - pad, 0.0) if low >= 0 else low - pad, high + pad)
    return Axis(ticks[0], ticks[-1], start, end, None, ticks)


def wants_log(values: Sequence[float], spread: float = 30.0) -> bool:
    """Positive values spanning more than `spread`× read better on a log axis."""
    finite = _finite(values, positive=False)
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > spread


def _frame(title: str, x: Axis, y: Axis, x_label: str, y_label: str, width: int) -> list[str]:
    """Title, axes, grid lines and tick labels."""
    bottom, top = y.start, y.end
    left, right = x.start, x.end
    parts = [
        f'<text class="ct" x="{width / 2:.0f}" y="16" text-anchor="middle">{escape(title)}</text>',
        f'<line class="ax" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>',
        f'<line class="ax" x1="{left}" y1="{bottom}" x2="{left}" y2="{top}"/>',
    ]
    for tick in x.ticks:
        px = x(tick)
        if left - 0.5 <= px <= right + 0.5:
            parts.append(f'<line class="gr" x1="{px:.1f}" y1="{bottom}" x2="{px:.1f}" y2="{top}"/>')
            parts.append(
                f'<text class="tk" x="{px:.1f}" y="{bottom + 14}" text-anchor="middle">'
                f"{escape(f'{tick:g}')}</text>"
            )
    for tick in y.ticks:
        py = y(tick)
        if top - 0.5 <= py <= bottom + 0.5:
            parts.append(f'<line class="gr" x1="{left}" y1="{py:.1f}" x2="{right}" y2="{py:.1f}"/>')
            parts.append(
                f'<text class="tk" x="{left - 4}" y="{py + 3:.1f}" text-anchor="end">'
                f"{escape(f'{tick:.3g}')}</text>"
            )
    parts.append(
        f'<text class="al" x="{(left + right) / 2:.0f}" y="{bottom + 32}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text class="al" transform="translate(13 {(top + bottom) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return parts


def _svg(parts: list[str], width: int, height: int, label: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}">' + "".join(parts) + "</svg>"
    )


LEGEND_COLUMNS = 3
LEGEND_ROW = 14


def _legend(series: Sequence[Series], width: int, top: float) -> list[str]:
    """Legend rows under the plot (never over the data), LEGEND_COLUMNS entries a row."""
    parts = []
    column_width = (width - MARGIN_LEFT) / LEGEND_COLUMNS
    for i, s in enumerate(series):
        x0 = MARGIN_LEFT + (i % LEGEND_COLUMNS) * column_width
        y = top + LEGEND_ROW * (i // LEGEND_COLUMNS) + 10
        dash = ' stroke-dasharray="4 3"' if s.dashed else ""
        parts.append(
            f'<line x1="{x0:.0f}" y1="{y - 3}" x2="{x0 + 14:.0f}" y2="{y - 3}" stroke="{s.color}" '
            f'stroke-width="2"{dash}/><text class="lg" x="{x0 + 18:.0f}" y="{y}">'
            f"{escape(s.name)}</text>"
        )
    return parts


def legend_height(n: int) -> int:
    return LEGEND_ROW * math.ceil(n / LEGEND_COLUMNS) + 4 if n else 0


def scatter_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    log_x: float | None = 2,
    log_y: float | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
    legend: bool = True,
) -> str:
    """Points with hover tooltips and a line per series (e.g. a metric against L0); `legend`
    off when the series are too many to name (their lines still say who they are on hover)."""
    xs = [p.x for s in series for p in s.points] + [x for s in series for x, _ in s.line]
    ys = [p.y for s in series for p in s.points] + [y for s in series for _, y in s.line]
    if log_y is not None and not _finite(ys, positive=True):
        log_y = None
    if log_x is not None and not _finite(xs, positive=True):
        log_x = None
    x = make_axis(xs, MARGIN_LEFT, width - MARGIN_RIGHT, log_x)
    y = make_axis(ys, height - MARGIN_BOTTOM, MARGIN_TOP, log_y)
    parts = _frame(title, x, y, x_label, y_label, width)

    def usable(px: float, py: float) -> bool:
        return math.isfinite(px) and math.isfinite(py) and (log_x is None or px > 0)

    for s in series:
        line = [
            (px, py)
            for px, py in s.line
            if usable(px, py) and (log_y is None or py > 0) and math.isfinite(py)
        ]
        if len(line) >= 2:
            path = " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py in line)
            dash = ' stroke-dasharray="5 4"' if s.dashed else ""
            parts.append(
                f'<polyline class="ln" points="{path}" stroke="{s.color}"{dash}>'
                f"<title>{escape(s.tip or s.name)}</title></polyline>"
            )
        for p in s.points:
            if not usable(p.x, p.y) or (log_y is not None and p.y <= 0):
                continue
            parts.append(
                f'<circle class="pt" cx="{x(p.x):.1f}" cy="{y(p.y):.1f}" r="3.2" '
                f'fill="{s.color}"><title>{escape(p.tip)}</title></circle>'
            )
    if not legend:
        return _svg(parts, width, height, title)
    parts += _legend(series, width, height)
    return _svg(parts, width, height + legend_height(len(series)), title)


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    log_y: float | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
    legend: bool = True,
) -> str:
    """One polyline per series (hover: its name), linear x (e.g. training curves)."""
    return scatter_chart(
        [Series(s.name, s.color, (), s.line, s.dashed, s.tip) for s in series],
        title=title,
        x_label=x_label,
        y_label=y_label,
        log_x=None,
        log_y=log_y,
        width=width,
        height=height,
        legend=legend,
    )


def bar_chart(
    edges: Sequence[float],
    counts: Sequence[float],
    *,
    title: str,
    x_label: str,
    y_label: str,
    tips: Sequence[str] | None = None,
    color: str = PALETTE[0],
    width: int = WIDTH,
    height: int = 220,
) -> str:
    """A histogram: bar i spans edges[i]..edges[i + 1] with height counts[i]."""
    x = make_axis(list(edges), MARGIN_LEFT, width - MARGIN_RIGHT, None)
    x.low, x.high = edges[0], edges[-1]
    x.ticks = nice_ticks(edges[0], edges[-1])
    top = max(list(counts) + [1])
    y = make_axis([0.0, float(top)], height - MARGIN_BOTTOM, MARGIN_TOP, None)
    y.low = 0.0
    y.ticks = [t for t in y.ticks if t >= 0]
    parts = _frame(title, x, y, x_label, y_label, width)
    for i, count in enumerate(counts):
        left, right = x(edges[i]), x(edges[i + 1])
        top_px = y(count)
        tip = tips[i] if tips else f"{fmt(edges[i])}–{fmt(edges[i + 1])}: {fmt(count)}"
        parts.append(
            f'<rect class="br" x="{left:.1f}" y="{top_px:.1f}" width="{max(right - left - 1, 1):.1f}" '
            f'height="{max(y(0) - top_px, 0):.1f}" fill="{color}"><title>{escape(tip)}</title></rect>'
        )
    return _svg(parts, width, height, title)
