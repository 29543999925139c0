"""The report's charts as inline SVG, drawn by mapwise itself.

Why no charting library: the report must open offline from one file with no request of
any kind, and its charts are a few rectangles and lines; drawing them here costs less
than vendoring a library (and its licence) into every report. Tooltips are SVG
``<title>`` elements, which every browser shows natively, so the report needs no script.
Colours and text follow CSS variables of the page (light and dark schemes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from mapwise.report.layout import Bar, Bin, Timeline, clock, digits_for
from mapwise.report.model import OUTCOMES
from mapwise.reports import human_seconds

LABEL_WIDTH = 150  # the timeline's row labels
RIGHT = 40  # room for the last time label
ROW_HEIGHT = 18
AXIS_HEIGHT = 26
TOP = 22  # run labels above the rows
PLOT_HEIGHT = 180  # histogram and cost chart


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def patterns() -> str:
    """One fill per outcome: its colour, and a pattern over it for those that have one."""
    defs = []
    for key, (_, colour, pattern) in OUTCOMES.items():
        marks = {
            "solid": "",
            "hatch": '<path d="M0,6 L6,0" stroke="#000" stroke-opacity=".45" stroke-width="1.5"/>',
            "dots": '<circle cx="3" cy="3" r="1.3" fill="#000" fill-opacity=".45"/>',
            "stripes": '<path d="M0,3 H6" stroke="#000" stroke-opacity=".35" stroke-width="1.5"/>',
            "cross": '<path d="M0,0 L6,6 M6,0 L0,6" stroke="#000" stroke-opacity=".45"/>',
            "vstripes": '<path d="M3,0 V6" stroke="#fff" stroke-opacity=".6" stroke-width="1.5"/>',
        }[pattern]
        defs.append(
            f'<pattern id="p-{key}" width="6" height="6" patternUnits="userSpaceOnUse">'
            f'<rect width="6" height="6" fill="{colour}"/>{marks}</pattern>'
        )
    return f'<svg width="0" height="0" aria-hidden="true"><defs>{"".join(defs)}</defs></svg>'


def legend(counts: dict[str, int]) -> str:
    """Swatches with the outcome's name and how many attempts had it."""
    items = []
    for key, (label, _, _) in OUTCOMES.items():
        if counts.get(key):
            items.append(
                f'<li><svg width="22" height="12" aria-hidden="true"><rect width="22" '
                f'height="12" fill="url(#p-{key})"/></svg> {escape(label)} '
                f'<span class="muted">({counts[key]:,})</span></li>'
            )
    return f'<ul class="legend">{"".join(items)}</ul>'


def _ticks(start: float, seconds: float, width: float, y: float) -> str:
    parts = []
    digits = digits_for(seconds / 5)  # enough to tell the ticks apart
    for n in range(6):
        x = width * n / 5
        parts.append(
            f'<line class="grid" x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{TOP}" y2="{_fmt(y)}"/>'
            f'<text class="axis" x="{_fmt(x)}" y="{_fmt(y + 16)}" text-anchor="middle">'
            f"{clock(start + seconds * n / 5, digits=digits)}</text>"
        )
    return "".join(parts)


def timeline(layout: Timeline) -> str:
    """Rows of bars, runs shaded behind them, a time axis below."""
    rows = max(len(layout.rows), 1)
    height = TOP + rows * ROW_HEIGHT + AXIS_HEIGHT
    width = layout.width
    runs = []
    for n, run in enumerate(layout.runs):
        shade = "run-a" if n % 2 == 0 else "run-b"
        label = run.label.split(",")[0]
        # a label that would run past the right edge ends at the run's start instead
        fits = run.x + 3 + 6.5 * len(label) <= width + RIGHT
        where = f'x="{_fmt(run.x + 3)}"' if fits else f'x="{_fmt(run.x - 3)}" text-anchor="end"'
        runs.append(
            f'<g class="run"><rect class="{shade}" x="{_fmt(run.x)}" y="{TOP}" '
            f'width="{_fmt(run.width)}" height="{rows * ROW_HEIGHT}"><title>'
            f"{escape(run.label)}</title></rect>"
            f'<line class="run-start" x1="{_fmt(run.x)}" x2="{_fmt(run.x)}" y1="4" '
            f'y2="{TOP + rows * ROW_HEIGHT}"/><text class="axis" {where} '
            f'y="14">{escape(label)}</text></g>'
        )
    labels = "".join(
        f'<text class="label" x="{LABEL_WIDTH - 8}" y="{TOP + n * ROW_HEIGHT + 13}" '
        f'text-anchor="end">{escape(label)}</text>'
        for n, label in enumerate(layout.rows)
    )
    bars = "".join(_bar(bar) for bar in layout.bars)
    axis = _ticks(layout.start, layout.seconds, width, TOP + rows * ROW_HEIGHT)
    return (
        f'<svg class="chart" role="img" aria-label="timeline of {layout.attempts} attempts" '
        f'viewBox="0 0 {_fmt(LABEL_WIDTH + width + RIGHT)} {height}" '
        f'width="{_fmt(LABEL_WIDTH + width + RIGHT)}" height="{height}">'
        f'{labels}<g transform="translate({LABEL_WIDTH},0)">{"".join(runs)}{axis}'
        f'<g id="bars">{bars}</g></g></svg>'
    )


def _bar(bar: Bar) -> str:
    """One bar; a gathered one with a mark along its top for its most serious outcome."""
    y = TOP + bar.row * ROW_HEIGHT + 2
    shown = (
        f'<rect class="bar" data-count="{bar.count}" data-outcome="{bar.outcome}" '
        f'x="{_fmt(bar.x)}" y="{y}" width="{_fmt(bar.width)}" height="{ROW_HEIGHT - 4}" '
        f'fill="url(#p-{bar.outcome})"><title>{escape(bar.tip)}</title></rect>'
    )
    if bar.mark is None:
        return shown
    return shown + (
        f'<rect class="mark" data-outcome="{bar.mark}" x="{_fmt(bar.x)}" y="{y}" '
        f'width="{_fmt(bar.width)}" height="4" fill="{OUTCOMES[bar.mark][1]}">'
        f"<title>{escape(bar.tip)}</title></rect>"
    )


def _duration(seconds: float, bins: Sequence[Bin], every: int) -> str:
    """An axis label of the histogram: ``human_seconds``, unless labels ``every`` bins
    apart would read the same; then milliseconds with the decimals that tell them apart."""
    step = min(b.high - b.low for b in bins) * every
    if step >= 0.001 or seconds >= 60:
        return human_seconds(seconds)
    decimals = min(max(math.ceil(-math.log10(step * 1000)), 1), 3) if step > 0 else 3
    return f"{seconds * 1000:.{decimals}f}ms"


def histogram(bins: Sequence[Bin], log: bool, width: float) -> str:
    """Item durations: a bar per bin, counts on hover."""
    if not bins:
        return '<p class="muted">no item has finished yet</p>'
    most = max(b.count for b in bins) or 1
    slot = width / len(bins)
    bars = []
    for n, b in enumerate(bins):
        h = PLOT_HEIGHT * b.count / most
        bars.append(
            f'<rect class="hist" x="{_fmt(n * slot + 1)}" y="{_fmt(PLOT_HEIGHT - h)}" '
            f'width="{_fmt(max(slot - 2, 1))}" height="{_fmt(h)}"><title>{b.count:,} items '
            f"took {human_seconds(b.low)} to {human_seconds(b.high)}</title></rect>"
        )
    every = max(len(bins) // 6, 1)
    marks = "".join(
        f'<text class="axis" x="{_fmt(n * slot)}" y="{PLOT_HEIGHT + 16}" text-anchor="middle">'
        f"{_duration(bins[n].low, bins, every)}</text>"
        for n in range(0, len(bins), max(len(bins) // 6, 1))
    ) + (
        f'<text class="axis" x="{_fmt(width)}" y="{PLOT_HEIGHT + 16}" text-anchor="end">'
        f"{_duration(bins[-1].high, bins, every)}</text>"
    )
    scale = "log scale" if log else "linear scale"
    return (
        f'<svg class="chart" role="img" aria-label="item durations, {scale}" '
        f'viewBox="-30 -14 {_fmt(width + 60)} {PLOT_HEIGHT + 36}" '
        f'width="{_fmt(width + 60)}" height="{PLOT_HEIGHT + 36}">'
        f'<text class="axis" x="0" y="-2">{most:,} item{"s" if most != 1 else ""}</text>'
        f'<line class="grid" x1="0" x2="{_fmt(width)}" y1="{PLOT_HEIGHT}" y2="{PLOT_HEIGHT}"/>'
        f"{''.join(bars)}{marks}</svg>"
    )


def cost_line(points: Sequence[tuple[float, float]], width: float) -> str:
    """The job's cumulative spend against time."""
    if not points:
        return ""
    start, end = points[0][0], points[-1][0]
    span = max(end - start, 1e-3)
    digits = digits_for(span)
    top = max(points[-1][1], 1e-9)
    coords = " ".join(
        f"{_fmt((t - start) / span * width)},{_fmt(PLOT_HEIGHT - usd / top * PLOT_HEIGHT)}"
        for t, usd in points
    )
    return (
        f'<svg class="chart" role="img" aria-label="cost over time" '
        f'viewBox="-40 -14 {_fmt(width + 80)} {PLOT_HEIGHT + 36}" '
        f'width="{_fmt(width + 80)}" height="{PLOT_HEIGHT + 36}">'
        f'<text class="axis" x="0" y="-2">${points[-1][1]:,.2f}</text>'
        f'<line class="grid" x1="0" x2="{_fmt(width)}" y1="{PLOT_HEIGHT}" y2="{PLOT_HEIGHT}"/>'
        f'<polyline class="cost" points="{coords}"><title>${points[-1][1]:,.4f} by '
        f"{clock(end)}</title></polyline>"
        f'<text class="axis" x="0" y="{PLOT_HEIGHT + 16}">{clock(start, digits=digits)}</text>'
        f'<text class="axis" x="{_fmt(width)}" y="{PLOT_HEIGHT + 16}" text-anchor="end">'
        f"{clock(end, digits=digits)}</text></svg>"
    )
