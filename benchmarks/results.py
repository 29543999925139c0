"""Measured figures, their targets, and the verdicts: values only, no I/O."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """A bound a figure must meet: ``>=`` (at least) or ``<=`` (at most) ``limit``."""

    op: str
    limit: float
    every: bool = False  # judged on every run (the worst), not on the median

    def met(self, value: float) -> bool:
        return value >= self.limit if self.op == ">=" else value <= self.limit

    def text(self, unit: str) -> str:
        word = "at least" if self.op == ">=" else "at most"
        return f"{word} {format_value(self.limit, unit)}" + (" in every run" if self.every else "")


def at_least(limit: float, *, every: bool = False) -> Target:
    return Target(">=", limit, every)


def at_most(limit: float, *, every: bool = False) -> Target:
    return Target("<=", limit, every)


@dataclass(frozen=True)
class Row:
    """One figure: every run's sample, its unit, and the target it is judged by, if any."""

    bench: str
    measure: str
    samples: tuple[float, ...]
    unit: str
    target: Target | None = None
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def verdict(self) -> str:
        """PASS or MISS against the target (by the median, or by every run); empty without
        a target."""
        if self.target is None:
            return ""
        if self.median is None:
            return "n/a"
        judged = self.samples if self.target.every else (self.median,)
        return "PASS" if all(self.target.met(value) for value in judged) else "MISS"

    def spread(self) -> str:
        """``n runs, min..max`` (the median alone says nothing of the noise)."""
        if len(self.samples) < 2:
            return f"{len(self.samples)}"
        low = format_value(min(self.samples), self.unit)
        high = format_value(max(self.samples), self.unit)
        return f"{len(self.samples)}: {low} .. {high}"


@dataclass
class Section:
    """What one benchmark produced: its rows and the notes that explain them."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def format_value(value: float, unit: str) -> str:
    """A figure with the precision its unit deserves."""
    if unit == "items/s":
        return f"{value:,.0f} items/s"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "x":
        return f"{value:.3f}x"  # enough digits that 0.497 is not shown as a missed 0.50
    if unit == "%":
        return f"{value:+.1f} %"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:g} {unit}".strip()


def ratio_row(
    bench: str, measure: str, numerator: Row, denominator: Row, target: Target | None
) -> Row:
    """The ratio of two figures' medians (one sample); no value when either is missing."""
    top, bottom = numerator.median, denominator.median
    samples = (top / bottom,) if top is not None and bottom else ()
    return Row(bench, measure, samples, "x", target, "ratio of the medians")


def paired_ratio_row(
    bench: str, measure: str, numerator: Row, denominator: Row, target: Target | None
) -> Row:
    """The ratio within each round (the two measured side by side, so that the machine's
    drift hits both alike): one sample per round, its median, min and max. Falls back to
    the ratio of the medians when the two were not measured the same number of times."""
    tops, bottoms = numerator.samples, denominator.samples
    if not tops or len(tops) != len(bottoms) or not all(bottoms):
        return ratio_row(bench, measure, numerator, denominator, target)
    samples = tuple(top / bottom for top, bottom in zip(tops, bottoms, strict=True))
    return Row(bench, measure, samples, "x", target, "ratio within each round")


def table(rows: list[Row]) -> list[str]:
    """The results as a Markdown table."""
    lines = [
        "| | measure | median | runs: min .. max | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        median = "—" if row.median is None else format_value(row.median, row.unit)
        target = row.target.text(row.unit) if row.target else ""
        measure = f"{row.measure} ({row.note})" if row.note else row.measure
        lines.append(
            f"| {row.bench} | {measure} | {median} | {row.spread()} | {target} | {row.verdict} |"
        )
    return lines


def verdict_lines(rows: list[Row]) -> list[str]:
    """``PASS B1 ...`` / ``MISS B3 ...``: one line per target."""
    lines = []
    for row in rows:
        if row.target is None:
            continue
        median = "no value" if row.median is None else format_value(row.median, row.unit)
        lines.append(
            f"{row.verdict:4} {row.bench} {row.measure}: {median} "
            f"(target {row.target.text(row.unit)})"
        )
    return lines
