"""The report's geometry, as pure functions of its data: timeline bars, histogram bins,
the cost series. No drawing here, so every rule is a test of microseconds.

The timeline has one row per place an attempt ran (a slot, or a host and slot under Dask)
and one bar per attempt. A job of 100,000 items would give bars far thinner than a pixel,
which a browser draws slowly and nobody can see: attempts thinner than a pixel are
gathered into one bar of at most ``CLUSTER_PX`` pixels, coloured by the outcome most of
them had, marked with the most serious other outcome among them (a failure among a
hundred successes must not vanish, nor paint them all red), and labelled with counts.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from mapwise.report.model import OUTCOMES, AttemptSpan, RunSpan
from mapwise.reports import human_seconds

CLUSTER_PX = 3.0  # widest run of gathered sub-pixel attempts
MIN_PX = 1.0  # an attempt at least this wide is a bar of its own
# outcomes from the most serious: a gathered bar's mark, and the tie-break of its colour
SEVERITY = ("failed", "timed_out", "merge_conflict", "interrupted", "running", "succeeded")


@dataclass(frozen=True)
class Bar:
    row: int
    x: float  # pixels from the left of the plot
    width: float
    outcome: str
    count: int  # attempts it stands for (1: one attempt)
    tip: str
    mark: str | None = None  # a gathered bar: the most serious outcome besides its colour's


@dataclass(frozen=True)
class RunMark:
    x: float
    width: float
    label: str


@dataclass(frozen=True)
class Timeline:
    rows: tuple[str, ...]  # row labels, top to bottom
    bars: tuple[Bar, ...]
    runs: tuple[RunMark, ...]
    start: float  # the time at x = 0
    seconds: float  # the time the plot's width covers
    width: float
    attempts: int  # attempts drawn (each bar stands for ``count`` of them)


def clock(moment: float, *, digits: int = 0) -> str:
    """``13:04:05`` (UTC), or with ``digits`` decimals of the second (``13:04:05.25``):
    times on the timeline and in tooltips."""
    text = time.strftime("%H:%M:%S", time.gmtime(moment))
    if digits <= 0:
        return text
    fraction = f"{moment % 1:.{digits}f}"
    if fraction.startswith("1"):  # rounded up to the next second
        return clock(moment + 0.5 * 10**-digits, digits=digits)
    return f"{text}{fraction[1:]}"


def digits_for(step: float) -> int:
    """Decimals of the second that tell apart times ``step`` seconds apart (0 to 3)."""
    if step >= 1:
        return 0
    return min(max(math.ceil(-math.log10(step)) if step > 0 else 3, 1), 3)


def attempt_tip(span: AttemptSpan) -> str:
    label = OUTCOMES[span.outcome][0]
    parts = [
        f"{span.item_id}",
        f"attempt {span.attempt_no}, run {span.run_no}",
        f"{human_seconds(span.end - span.start)} ({clock(span.start)}-{clock(span.end)})",
        label,
    ]
    if span.error:
        parts.append(span.error)
    if span.cost is not None:
        parts.append(f"${span.cost:.4f}")
    return " · ".join(parts)


def _row_key(span: AttemptSpan) -> tuple[str, int]:
    return (span.host, span.slot)


def row_labels(keys: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """``slot 3`` on one host; ``host · slot 3`` when attempts ran on several."""
    hosts = {host for host, _ in keys}
    if len(hosts) <= 1:
        return tuple(f"slot {slot}" for _, slot in keys)
    return tuple(f"{host} · slot {slot}" for host, slot in keys)


@dataclass
class _Cluster:
    x0: float
    x1: float
    outcomes: Counter[str]
    first: AttemptSpan
    last: AttemptSpan

    def bar(self, row: int) -> Bar:
        count = sum(self.outcomes.values())
        most = max(self.outcomes.values())
        outcome = next(o for o in SEVERITY if self.outcomes[o] == most)
        others = [o for o in SEVERITY[:-1] if self.outcomes[o] and o != outcome]
        mark = others[0] if others else None
        if count == 1:
            tip = attempt_tip(self.first)
        else:
            shown = ", ".join(
                f"{self.outcomes[o]} {OUTCOMES[o][0]}" for o in SEVERITY if self.outcomes[o]
            )
            tip = (
                f"{count} attempts, {clock(self.first.start)}-{clock(self.last.end)}: {shown}"
                f" ({self.first.item_id} ... {self.last.item_id})"
            )
        return Bar(row, self.x0, max(self.x1 - self.x0, MIN_PX), outcome, count, tip, mark)


def _row_bars(
    row: int, spans: list[AttemptSpan], start: float, scale: float, width: float
) -> list[Bar]:
    bars: list[Bar] = []
    cluster: _Cluster | None = None
    for span in sorted(spans, key=lambda s: (s.start, s.attempt_id)):
        x0, x1 = (span.start - start) * scale, (span.end - start) * scale
        x0 = min(x0, width - MIN_PX)  # an instant attempt at the very end stays on the plot
        if x1 - x0 >= MIN_PX:
            if cluster is not None:
                bars.append(cluster.bar(row))
                cluster = None
            bars.append(Bar(row, x0, x1 - x0, span.outcome, 1, attempt_tip(span)))
            continue
        if cluster is not None and x0 <= cluster.x1 + MIN_PX and x1 - cluster.x0 <= CLUSTER_PX:
            cluster.x1 = max(cluster.x1, x1)
            cluster.outcomes[span.outcome] += 1
            cluster.last = span
            continue
        if cluster is not None:
            bars.append(cluster.bar(row))
        cluster = _Cluster(x0, x1, Counter({span.outcome: 1}), span, span)
    if cluster is not None:
        bars.append(cluster.bar(row))
    return bars


def timeline(attempts: Sequence[AttemptSpan], runs: Sequence[RunSpan], width: float) -> Timeline:
    """Rows, bars and run marks of the attempts over ``width`` pixels."""
    moments = [a.start for a in attempts] + [r.start for r in runs]
    ends = [a.end for a in attempts] + [r.end for r in runs]
    start = min(moments, default=0.0)
    seconds = max(max(ends, default=start) - start, 1e-3)
    scale = width / seconds
    keys = sorted({_row_key(a) for a in attempts})
    index = {key: n for n, key in enumerate(keys)}
    by_row: dict[int, list[AttemptSpan]] = {}
    for span in attempts:
        by_row.setdefault(index[_row_key(span)], []).append(span)
    bars = [
        bar for row in sorted(by_row) for bar in _row_bars(row, by_row[row], start, scale, width)
    ]
    marks = tuple(
        RunMark(
            (run.start - start) * scale,
            max((run.end - run.start) * scale, MIN_PX),
            f"run {run.run_no} ({'start' if run.run_no == 1 else 'resume'}), {run.outcome}",
        )
        for run in runs
    )
    return Timeline(row_labels(keys), tuple(bars), marks, start, seconds, width, len(attempts))


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    count: int


def histogram(values: Sequence[float], bins: int = 30) -> tuple[tuple[Bin, ...], bool]:
    """Bins of ``values``; on a log scale (True) when they span more than 20 times."""
    positive = [v for v in values if v > 0]
    if not positive:
        return (), False
    low, high = min(positive), max(positive)
    if high <= low:
        return (Bin(low, high, len(positive)),), False
    log = high / low > 20
    if log:
        edges = [low * (high / low) ** (n / bins) for n in range(bins + 1)]
    else:
        edges = [low + (high - low) * n / bins for n in range(bins + 1)]
    counts = [0] * bins
    for value in positive:
        if log:
            where = math.log(value / low) / math.log(high / low)
        else:
            where = (value - low) / (high - low)
        counts[min(int(where * bins), bins - 1)] += 1
    return tuple(Bin(edges[n], edges[n + 1], counts[n]) for n in range(bins)), log


def thin(points: Sequence[tuple[float, float]], most: int = 600) -> list[tuple[float, float]]:
    """At most ``most`` points of a cumulative series, its last one always kept."""
    if len(points) <= most:
        return list(points)
    step = (len(points) - 1) / (most - 1)
    return [points[round(n * step)] for n in range(most)]  # the last: n = most - 1
