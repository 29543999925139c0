"""The report's geometry (``mapwise.report.layout``), as pure functions of plain values.

Attempts are built by hand: with a run from 0 to 1000 s drawn over 1000 pixels, one
second is one pixel, so the tests say in pixels what the timeline should look like.
Random attempts (hypothesis) check what holds for any job: every attempt is counted by
exactly one bar, bars stay on the plot, and a gathered bar never hides the most serious
outcome among its attempts (its colour is the outcome most of them had, its mark the
most serious other one).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapwise.report.layout import (
    CLUSTER_PX,
    MIN_PX,
    SEVERITY,
    Bar,
    histogram,
    row_labels,
    thin,
    timeline,
)
from mapwise.report.model import OUTCOMES, AttemptSpan, RunSpan

WIDTH = 1000.0
# a run of 1000 s over 1000 pixels: one second is one pixel
WHOLE_RUN = RunSpan(run_no=1, start=0.0, end=1000.0, outcome="completed")


def attempt(
    n: int,
    start: float,
    end: float,
    outcome: str = "succeeded",
    *,
    slot: int = 0,
    host: str = "vm",
    item: str | None = None,
    error: str | None = None,
    cost: float | None = None,
) -> AttemptSpan:
    return AttemptSpan(
        attempt_id=n,
        item_id=item if item is not None else f"item-{n}",
        attempt_no=1,
        run_no=1,
        host=host,
        slot=slot,
        start=start,
        end=end,
        outcome=outcome,
        error=error,
        cost=cost,
    )


def counted(bars: Sequence[Bar]) -> int:
    return sum(bar.count for bar in bars)


# -- one bar per attempt -----------------------------------------------------------------


def test_attempts_wider_than_a_pixel_get_one_bar_each_where_they_ran() -> None:
    # Given ten attempts of 50 s one after the other in slot 0, and a 1000 s run
    spans = [attempt(n, n * 100.0, n * 100.0 + 50.0) for n in range(10)]

    # When they are laid out over 1000 pixels
    shape = timeline(spans, [WHOLE_RUN], WIDTH)

    # Then each attempt is one bar of its own, 50 pixels wide, where it ran
    assert len(shape.bars) == 10
    assert [bar.count for bar in shape.bars] == [1] * 10
    for n, bar in enumerate(shape.bars):
        assert bar.row == 0
        assert bar.x == pytest.approx(n * 100.0)
        assert bar.width == pytest.approx(50.0)
        assert bar.outcome == "succeeded"
        assert f"item-{n}" in bar.tip
    assert shape.attempts == 10
    assert shape.rows == ("slot 0",)
    assert shape.start == 0.0
    assert shape.seconds == pytest.approx(1000.0)


def test_a_single_bar_says_item_attempt_outcome_error_and_cost_in_its_tooltip() -> None:
    # Given one failed attempt of 20 s with an error and a cost
    span = attempt(1, 100.0, 120.0, "failed", item="report-42", error="exit_code: boom")
    span = dataclasses.replace(span, attempt_no=3, run_no=2, cost=0.125)

    # When it is laid out
    (bar,) = timeline([span], [WHOLE_RUN], WIDTH).bars

    # Then its tooltip names what a reader needs
    for part in ("report-42", "attempt 3, run 2", "failed", "exit_code: boom", "$0.1250"):
        assert part in bar.tip, bar.tip
    assert (bar.count, bar.outcome) == (1, "failed")


def test_each_slot_is_a_row_and_bars_go_to_their_slot() -> None:
    # Given attempts on slots 2 and 0 of one host
    spans = [attempt(1, 0.0, 10.0, slot=2), attempt(2, 0.0, 10.0, slot=0)]

    # When they are laid out
    shape = timeline(spans, [WHOLE_RUN], WIDTH)

    # Then the rows are the slots in order, and each bar is in its slot's row
    assert shape.rows == ("slot 0", "slot 2")
    rows = {bar.tip.split(" · ")[0]: bar.row for bar in shape.bars}
    assert rows == {"item-1": 1, "item-2": 0}


# -- sub-pixel attempts are gathered -----------------------------------------------------


def test_attempts_thinner_than_a_pixel_are_gathered_into_few_bars_that_count_them_all() -> None:
    # Given 10,000 attempts of 0.05 s, one every 0.1 s, in one slot (0.1 pixel apart)
    spans = [attempt(n, n * 0.1, n * 0.1 + 0.05) for n in range(10_000)]

    # When they are laid out over 1000 pixels of 1000 s
    shape = timeline(spans, [WHOLE_RUN], WIDTH)

    # Then far fewer bars stand for them, and every attempt is counted once
    assert len(shape.bars) < len(spans) / 10
    assert counted(shape.bars) == len(spans)
    assert shape.attempts == len(spans)
    # And no bar is wider than CLUSTER_PX unless it is one attempt
    for bar in shape.bars:
        assert bar.count == 1 or bar.width <= CLUSTER_PX + 1e-9, bar
    # And a gathered bar says how many attempts it stands for
    gathered = [bar for bar in shape.bars if bar.count > 1]
    assert gathered
    assert all(bar.tip.startswith(f"{bar.count} attempts") for bar in gathered)


def test_a_wide_attempt_is_never_gathered_with_thin_ones_around_it() -> None:
    # Given thin attempts, a 30 s attempt, then thin attempts again
    thin_before = [attempt(n, n * 0.2, n * 0.2 + 0.1) for n in range(5)]
    wide = attempt(99, 2.0, 32.0, "failed")
    thin_after = [attempt(100 + n, 33.0 + n * 0.2, 33.1 + n * 0.2) for n in range(5)]

    # When they are laid out
    bars = timeline([*thin_before, wide, *thin_after], [WHOLE_RUN], WIDTH).bars

    # Then the wide one is a bar of its own between two gathered bars
    assert [bar.count for bar in bars] == [5, 1, 5]
    assert bars[1].outcome == "failed"
    assert bars[1].width == pytest.approx(30.0)


PAIRS = [(one, other) for one in SEVERITY for other in SEVERITY if one != other]


def gathered(outcomes: Sequence[str]) -> Bar:
    """The one bar of sub-pixel attempts close together (0.1 px apart), in this order."""
    spans = [attempt(n, 10.0 + n * 0.1, 10.05 + n * 0.1, o) for n, o in enumerate(outcomes)]
    (bar,) = timeline(spans, [WHOLE_RUN], WIDTH).bars
    assert bar.count == len(outcomes)
    return bar


def mark_for(outcome: str) -> str | None:
    """A gathered bar marks a serious outcome besides its colour's; never a success."""
    return None if outcome == "succeeded" else outcome


@pytest.mark.parametrize(("most", "other"), PAIRS)
def test_a_gathered_bar_is_coloured_by_the_outcome_most_of_its_attempts_had(
    most: str, other: str
) -> None:
    # Given three sub-pixel attempts close together: two of one outcome, one of another
    # When they are laid out
    bar = gathered([most, other, most])

    # Then one bar stands for the three, coloured by the outcome two of them had
    assert bar.outcome == most
    # And marked with the other one, unless that is a success
    assert bar.mark == mark_for(other)
    # And its tooltip counts each outcome
    assert bar.tip.startswith("3 attempts")
    assert f"2 {OUTCOMES[most][0]}" in bar.tip
    assert f"1 {OUTCOMES[other][0]}" in bar.tip


@pytest.mark.parametrize(
    ("worse", "better"),
    [(SEVERITY[i], SEVERITY[j]) for i in range(len(SEVERITY)) for j in range(i + 1, len(SEVERITY))],
)
def test_a_tie_is_coloured_by_the_more_serious_outcome(worse: str, better: str) -> None:
    # Given two sub-pixel attempts close together, of two outcomes
    # When they are laid out (in either order)
    for order in ([better, worse], [worse, better]):
        bar = gathered(order)

        # Then the bar has the more serious outcome's colour, the other as its mark
        assert bar.outcome == worse
        assert bar.mark == mark_for(better)


def test_a_failure_among_a_hundred_successes_is_marked_not_painted_over() -> None:
    # Given a hundred successes, a failure and an interruption within three pixels
    outcomes = ["succeeded"] * 50 + ["interrupted", "failed"] + ["succeeded"] * 50
    spans = [attempt(n, 10.0 + n * 0.02, 10.01 + n * 0.02, o) for n, o in enumerate(outcomes)]

    # When they are laid out
    (bar,) = timeline(spans, [WHOLE_RUN], WIDTH).bars

    # Then the bar is a success's colour, marked with the most serious of the others
    assert (bar.count, bar.outcome, bar.mark) == (102, "succeeded", "failed")
    for part in ("102 attempts", "1 failed", "1 interrupted", "100 succeeded"):
        assert part in bar.tip, bar.tip


def test_a_bar_of_one_attempt_has_no_mark() -> None:
    # Given attempts wide and thin, each alone
    spans = [attempt(1, 0.0, 100.0, "failed"), attempt(2, 500.0, 500.2, "timed_out")]

    # When they are laid out, Then each bar is its attempt's outcome with no mark
    bars = timeline(spans, [WHOLE_RUN], WIDTH).bars
    shown = [(b.count, b.outcome, b.mark) for b in bars]
    assert shown == [(1, "failed", None), (1, "timed_out", None)]


@settings(max_examples=200, deadline=None)
@given(outcomes=st.lists(st.sampled_from(SEVERITY), min_size=2, max_size=25))
def test_a_gathered_bar_never_hides_its_most_serious_outcome(outcomes: list[str]) -> None:
    # Given sub-pixel attempts within one cluster, of any outcomes
    # When they are laid out
    bar = gathered(outcomes)

    # Then its colour is an outcome most of them had
    counts = Counter(outcomes)
    assert counts[bar.outcome] == max(counts.values())
    # And the most serious outcome among them is its colour or its mark
    worst = next(o for o in SEVERITY if counts[o])
    assert worst in (bar.outcome, bar.mark)
    # And a mark is never a success nor the colour again
    assert bar.mark not in ("succeeded", bar.outcome)


def test_every_outcome_has_a_severity() -> None:
    # Given the outcomes a report draws, When their severity is looked up
    # Then each has one, so that a gathered bar always has a colour
    assert set(SEVERITY) == set(OUTCOMES)


# -- rows and runs -----------------------------------------------------------------------


def test_row_labels_name_the_slot_alone_on_one_host() -> None:
    # Given places on one host, When they are labelled, Then the label is the slot
    assert row_labels([("vm", 0), ("vm", 1), ("vm", 7)]) == ("slot 0", "slot 1", "slot 7")


def test_row_labels_name_host_and_slot_when_attempts_ran_on_several_hosts() -> None:
    # Given places on two hosts, When they are labelled, Then each names host and slot
    assert row_labels([("a", 0), ("a", 1), ("b", 0)]) == (
        "a · slot 0",
        "a · slot 1",
        "b · slot 0",
    )


def test_the_timeline_has_a_row_per_host_and_slot_under_dask() -> None:
    # Given attempts on two worker hosts, two slots each
    spans = [
        attempt(n, 0.0, 5.0, host=host, slot=slot)
        for n, (host, slot) in enumerate([("w2", 1), ("w1", 0), ("w2", 0), ("w1", 1)])
    ]

    # When they are laid out
    shape = timeline(spans, [WHOLE_RUN], WIDTH)

    # Then there is a row per host and slot, sorted, each with its bar
    assert shape.rows == ("w1 · slot 0", "w1 · slot 1", "w2 · slot 0", "w2 · slot 1")
    assert sorted(bar.row for bar in shape.bars) == [0, 1, 2, 3]


def test_each_run_is_marked_where_it_ran() -> None:
    # Given a first run from 0 to 400 s and a resume from 600 to 1000 s
    runs = [
        RunSpan(1, 0.0, 400.0, "interrupted"),
        RunSpan(2, 600.0, 1000.0, "completed"),
    ]
    spans = [attempt(1, 10.0, 390.0, "interrupted"), attempt(2, 610.0, 990.0)]

    # When they are laid out over 1000 pixels
    shape = timeline(spans, runs, WIDTH)

    # Then each run is a mark over its span, labelled start or resume and its outcome
    assert [(m.x, m.width) for m in shape.runs] == [
        pytest.approx((0.0, 400.0)),
        pytest.approx((600.0, 400.0)),
    ]
    assert [m.label for m in shape.runs] == [
        "run 1 (start), interrupted",
        "run 2 (resume), completed",
    ]


def test_a_job_with_no_attempt_has_no_row_and_no_bar() -> None:
    # Given a job whose run started but no attempt yet
    shape = timeline([], [RunSpan(1, 50.0, 60.0, "running")], WIDTH)

    # Then the timeline is empty but well formed
    assert (shape.rows, shape.bars, shape.attempts) == ((), (), 0)
    assert len(shape.runs) == 1
    assert shape.seconds > 0


# -- the histogram -----------------------------------------------------------------------


def test_durations_within_twenty_times_each_other_get_linear_bins() -> None:
    # Given durations from 1 to 10 s
    values = [float(v) for v in range(1, 11)]

    # When they are binned
    bins, log = histogram(values)

    # Then the 30 bins are of equal width from the least to the most, counting every value
    assert log is False
    assert len(bins) == 30
    assert bins[0].low == pytest.approx(1.0)
    assert bins[-1].high == pytest.approx(10.0)
    widths = {round(b.high - b.low, 9) for b in bins}
    assert len(widths) == 1
    assert sum(b.count for b in bins) == len(values)
    for value in values:
        assert any(b.low - 1e-9 <= value <= b.high + 1e-9 and b.count for b in bins)


def test_durations_spanning_more_than_twenty_times_get_log_bins() -> None:
    # Given durations from 10 ms to 100 s
    values = [0.01, 0.05, 0.3, 1.0, 7.0, 42.0, 100.0]

    # When they are binned
    bins, log = histogram(values, bins=12)

    # Then the bins grow by the same ratio each, from the least to the most
    assert log is True
    assert len(bins) == 12
    assert bins[0].low == pytest.approx(0.01)
    assert bins[-1].high == pytest.approx(100.0)
    ratios = [b.high / b.low for b in bins]
    assert all(r == pytest.approx(ratios[0]) for r in ratios)
    assert sum(b.count for b in bins) == len(values)


@pytest.mark.parametrize(("high", "log"), [(20.0, False), (20.5, True)])
def test_the_log_scale_starts_above_twenty_times(high: float, log: bool) -> None:
    # Given durations from 1 s to ``high``, When they are binned
    # Then the scale is logarithmic only when the most is more than 20 times the least
    assert histogram([1.0, 3.0, high])[1] is log


def test_the_histogram_counts_only_positive_durations() -> None:
    # Given durations with a zero and a negative one among them
    bins, _ = histogram([0.0, -1.0, 2.0, 3.0, 4.0])

    # Then only the positive ones are counted
    assert sum(b.count for b in bins) == 3


def test_no_positive_duration_gives_no_bin_and_equal_ones_give_one() -> None:
    # Given no finished item, or items that all took the same time
    # Then there is no bin, or one bin that counts them all
    assert histogram([]) == ((), False)
    assert histogram([0.0, 0.0]) == ((), False)
    (only,), log = histogram([2.5, 2.5, 2.5])
    assert (only.low, only.high, only.count, log) == (2.5, 2.5, 3, False)


@settings(max_examples=200, deadline=None)
@given(
    # durations are differences of clock readings: zero, or at least a microsecond
    values=st.lists(
        st.one_of(
            st.floats(min_value=-5.0, max_value=0.0), st.floats(min_value=1e-6, max_value=1e5)
        ),
        max_size=200,
    ),
    bins=st.integers(min_value=1, max_value=60),
)
def test_the_histogram_counts_every_positive_value_once(values: list[float], bins: int) -> None:
    # Given any durations, When they are binned
    found, _ = histogram(values, bins=bins)

    # Then the counts add up to the positive values, and bins cover them in order
    positive = [v for v in values if v > 0]
    assert sum(b.count for b in found) == len(positive)
    if positive:
        assert found[0].low == pytest.approx(min(positive))
        assert found[-1].high == pytest.approx(max(positive))
        assert all(b.low <= b.high for b in found)
        assert all(a.high == pytest.approx(b.low) for a, b in itertools.pairwise(found))


# -- thinning the cost series ------------------------------------------------------------


def series(n: int) -> list[tuple[float, float]]:
    return [(float(t), t * 0.5) for t in range(n)]


def test_a_short_series_is_kept_whole() -> None:
    # Given 600 points or fewer, When they are thinned to 600, Then all are kept
    assert thin(series(600), 600) == series(600)
    assert thin(series(3), 600) == series(3)
    assert thin([], 600) == []


@pytest.mark.parametrize("n", [601, 1000, 1234, 50_000])
def test_a_long_series_keeps_its_last_point_in_order(n: int) -> None:
    # Given a long cumulative series
    points = series(n)

    # When it is thinned to 600 points
    kept = thin(points, 600)

    # Then its last point (the job's total) is kept, its first too, in time order
    assert kept[-1] == points[-1]
    assert kept[0] == points[0]
    assert kept == sorted(set(kept))
    assert set(kept) <= set(points)


@pytest.mark.parametrize("n", [601, 1000, 50_000])
def test_a_long_series_is_thinned_to_at_most_the_points_asked_for(n: int) -> None:
    # Given a long series, When it is thinned to 600, Then at most 600 points are left
    assert len(thin(series(n), 600)) <= 600


# -- any attempts (hypothesis) -----------------------------------------------------------

HOSTS = ("vm", "w1", "w2")


LENGTHS = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=0.5),  # thinner than a pixel on most widths
    st.floats(min_value=0.0, max_value=600.0),
)
PLACED = st.tuples(
    st.floats(min_value=0.0, max_value=5000.0),  # start
    LENGTHS,
    st.sampled_from(sorted(OUTCOMES)),
    st.sampled_from(HOSTS),
    st.integers(min_value=0, max_value=3),  # slot
)


@st.composite
def random_attempts(draw: st.DrawFn) -> list[AttemptSpan]:
    """Attempts of any length (many thinner than a pixel) on a few hosts and slots."""
    return [
        attempt(n + 1, start, start + length, outcome, host=host, slot=slot)
        for n, (start, length, outcome, host, slot) in enumerate(
            draw(st.lists(PLACED, max_size=250))
        )
    ]


@st.composite
def random_runs(draw: st.DrawFn) -> list[RunSpan]:
    spans = draw(
        st.lists(
            st.tuples(
                st.floats(min_value=0.0, max_value=5000.0),
                st.floats(min_value=0.0, max_value=2000.0),
            ),
            max_size=3,
        )
    )
    return [
        RunSpan(n + 1, start, start + length, "completed")
        for n, (start, length) in enumerate(spans)
    ]


def _row_of(spans: Sequence[AttemptSpan]) -> dict[int, int]:
    """How many attempts each row has: rows are the (host, slot) places in sorted order."""
    places = sorted({(s.host, s.slot) for s in spans})
    return dict(Counter(places.index((s.host, s.slot)) for s in spans))


@settings(max_examples=300, deadline=None)
@given(
    spans=random_attempts(),
    runs=random_runs(),
    width=st.floats(min_value=20.0, max_value=2400.0),
)
def test_every_attempt_is_counted_by_exactly_one_bar_on_the_plot(
    spans: list[AttemptSpan], runs: list[RunSpan], width: float
) -> None:
    # Given any attempts and runs, When they are laid out over ``width`` pixels
    shape = timeline(spans, runs, width)

    # Then the bars count every attempt once, row by row
    assert counted(shape.bars) == len(spans) == shape.attempts
    per_row = Counter[int]()
    for bar in shape.bars:
        per_row[bar.row] += bar.count
    assert dict(per_row) == _row_of(spans)
    assert len(shape.rows) == len(_row_of(spans))
    for bar in shape.bars:
        assert bar.count >= 1
        assert bar.outcome in OUTCOMES
        # And a bar standing for several attempts is at most CLUSTER_PX wide
        assert bar.count == 1 or bar.width <= CLUSTER_PX + 1e-9, bar
        # And every bar starts within [0, width] and is at least a pixel wide
        assert -1e-6 <= bar.x <= width + 1e-6, bar
        assert bar.width >= MIN_PX - 1e-9
        # And it ends within the plot
        assert bar.x + bar.width <= width + 1e-6, bar
    for mark in shape.runs:
        assert -1e-6 <= mark.x <= width + 1e-6


def test_a_sub_pixel_attempt_at_the_end_stays_within_the_plot() -> None:
    # Given a 10 s attempt and an instant attempt right at its end
    spans = [attempt(1, 0.0, 10.0), attempt(2, 10.0, 10.0)]

    # When they are laid out over 100 pixels
    bars = timeline(spans, [], 100.0).bars

    # Then both bars lie within [0, 100]
    assert all(bar.x >= 0.0 and bar.x + bar.width <= 100.0 for bar in bars), bars


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.floats(min_value=1.001, max_value=20.0), min_size=1, max_size=40),
    gap=st.floats(min_value=0.0, max_value=5.0),
)
def test_attempts_at_least_a_pixel_wide_are_never_gathered(
    lengths: list[float], gap: float
) -> None:
    # Given attempts one after another within the 1000 s run, each more than a pixel wide
    spans = []
    moment = 0.0
    for n, length in enumerate(lengths):
        spans.append(attempt(n, moment, moment + length))
        moment += length + gap

    # When they are laid out over 1000 pixels (1 s = 1 px)
    bars = timeline(spans, [WHOLE_RUN], WIDTH).bars

    # Then each is a bar of its own, as wide as it lasted
    assert len(bars) == len(spans)
    for bar, span in zip(bars, spans, strict=True):
        assert bar.count == 1
        assert bar.x == pytest.approx(span.start)
        assert bar.width == pytest.approx(span.end - span.start)
