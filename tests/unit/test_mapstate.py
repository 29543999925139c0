"""The map phase's decisions: ``advance(state, event, now)`` with time as an argument.

Every case runs in microseconds: no clock is patched and nothing sleeps.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapwise.domain.mapstate import (
    Announce,
    AttemptLost,
    AttemptsEnded,
    Begin,
    Commit,
    Committed,
    Ended,
    ExecutorBroken,
    Finish,
    Interrupt,
    MapState,
    Policies,
    Poll,
    Quiet,
    Stop,
    StopKind,
    StopRequested,
    Wait,
    advance,
    decide,
)
from mapwise.domain.records import AttemptResult, LostAttempt, StepRecord, StepsOutcome
from mapwise.domain.states import AttemptOutcome, ErrorKind, ItemStatus
from mapwise.domain.usage import AgentUsage
from mapwise.workflow.model import Backoff, ErrorPolicy, OnItemFailure, RetryPolicy

NOW = 1_000.0


def result(*, ok: bool = True, interrupted: bool = False, slot: int = 0) -> AttemptResult:
    kind = None if ok and not interrupted else ErrorKind.EXIT_CODE
    if interrupted:
        kind = ErrorKind.INTERRUPTED
    outcome = StepsOutcome(steps=(), captures={"out": "x"} if ok else {}, error_kind=kind)
    return AttemptResult(
        attempt_id=1,
        item_index=0,
        attempt_no=1,
        slot=slot,
        host="h",
        started_at=NOW - 1,
        ended_at=NOW,
        duration=1.0,
        outcome=outcome,
        interrupted=interrupted,
    )


def ended(slot: int, *, ok: bool = True, interrupted: bool = False, before: int = 0) -> Ended:
    return Ended(slot, f"item-{slot}", before, result(ok=ok, interrupted=interrupted, slot=slot))


def policies(
    *,
    max_attempts: int = 1,
    backoff: Backoff = Backoff.FIXED,
    delay: float = 5.0,
    errors: ErrorPolicy | None = None,
) -> Policies:
    retry = RetryPolicy(
        max_attempts=max_attempts, backoff=backoff, initial_delay=delay, max_delay=60.0
    )
    return Policies(retry, errors or ErrorPolicy())


def running(slots: int, **counts: int) -> MapState:
    """A phase whose every slot runs an attempt."""
    return replace(
        MapState.start(slots, succeeded=0, dlq=0, retry_waits=0), free=(), running=slots, **counts
    )


# -- one attempt's decision -------------------------------------------------------------------


def test_a_success_is_final_and_keeps_its_captures() -> None:
    finished = decide(ended(0), policies().retry, NOW)
    assert finished.item_status is ItemStatus.SUCCEEDED
    assert finished.counted and finished.retry_at is None
    assert finished.result_json == {"captures": {"out": "x"}}
    assert finished.attempt_outcome is AttemptOutcome.SUCCEEDED


def test_an_interrupted_attempt_goes_back_to_pending_and_does_not_count() -> None:
    finished = decide(ended(0, interrupted=True, before=2), policies(max_attempts=3).retry, NOW)
    assert finished.item_status is ItemStatus.PENDING
    assert not finished.counted
    assert finished.attempt_outcome is AttemptOutcome.INTERRUPTED


@pytest.mark.parametrize(
    ("backoff", "before", "wait"),
    [
        (Backoff.FIXED, 0, 5.0),
        (Backoff.FIXED, 3, 5.0),
        (Backoff.LINEAR, 0, 5.0),
        (Backoff.LINEAR, 2, 15.0),
        (Backoff.EXPONENTIAL, 0, 5.0),
        (Backoff.EXPONENTIAL, 3, 40.0),
        (Backoff.EXPONENTIAL, 4, 60.0),  # capped by max_delay
    ],
)
def test_a_failure_with_attempts_left_waits_out_its_backoff(
    backoff: Backoff, before: int, wait: float
) -> None:
    retry = policies(max_attempts=10, backoff=backoff).retry
    finished = decide(ended(0, ok=False, before=before), retry, NOW)
    assert finished.item_status is ItemStatus.RETRY_WAIT
    assert finished.retry_at == NOW + wait
    assert finished.counted
    assert finished.attempt_outcome is AttemptOutcome.FAILED


@pytest.mark.parametrize(("max_attempts", "before"), [(1, 0), (3, 2), (3, 5)])
def test_a_failure_that_spends_the_last_attempt_goes_to_the_dlq(
    max_attempts: int, before: int
) -> None:
    retry = policies(max_attempts=max_attempts).retry
    finished = decide(ended(0, ok=False, before=before), retry, NOW)
    assert finished.item_status is ItemStatus.DLQ
    assert finished.retry_at is None


# -- slots and commits ------------------------------------------------------------------------


def test_the_first_transaction_is_offered_every_slot() -> None:
    state = MapState.start(3, succeeded=0, dlq=0, retry_waits=0)
    state, actions = advance(state, Begin(), NOW, policies())
    assert actions == [Commit((), (0, 1, 2), True, ())]
    assert state.free == () and state.commits == 1


def test_results_and_their_slots_go_into_one_transaction() -> None:
    state = running(3)
    event = AttemptsEnded((ended(2), ended(0, ok=False)))
    state, actions = advance(state, event, NOW, policies())
    [commit] = actions
    assert isinstance(commit, Commit)
    assert commit.offered == (0, 2) and commit.claim
    assert [f.item_status for f in commit.finished] == [ItemStatus.SUCCEEDED, ItemStatus.DLQ]
    assert (state.running, state.succeeded, state.dlq, state.commits) == (1, 1, 1, 1)


def test_a_slot_is_offered_again_only_after_its_transaction_commits() -> None:
    state = running(2)
    state, _ = advance(state, AttemptsEnded((ended(0),)), NOW, policies())
    assert state.free == ()  # offered, not free
    state, actions = advance(state, AttemptsEnded((ended(1),)), NOW, policies())
    assert actions == [Commit(actions[0].finished, (1,), True, ())]  # type: ignore[union-attr]
    state, _ = advance(state, Committed((0,), (), 0, 1), NOW, policies())
    assert state.free == (0,) and state.commits == 1


def test_a_committed_claim_starts_running_and_unclaimed_slots_come_back() -> None:
    state = replace(MapState.start(3, succeeded=0, dlq=0, retry_waits=2), free=(), commits=1)
    state, actions = advance(state, Committed((0, 1, 2), (0, 2), 1, 1), NOW, policies())
    assert actions == []
    assert (state.free, state.running, state.commits, state.retry_waits) == ((1,), 2, 0, 1)


def test_a_lost_execution_is_recorded_with_the_next_transaction() -> None:
    gone = LostAttempt(attempt_id=7, host="w1", started_at=NOW - 5, ended_at=NOW - 2)
    state, actions = advance(running(1), AttemptLost(gone), NOW, policies())
    assert actions == [] and state.lost == (gone,)
    state, actions = advance(state, AttemptsEnded((ended(0),)), NOW, policies())
    assert actions[0] == Commit(actions[0].finished, (0,), True, (gone,))  # type: ignore[union-attr]
    assert state.lost == ()


# -- the error policy -------------------------------------------------------------------------


def test_on_item_failure_stop_stops_at_the_first_dlq_item() -> None:
    errors = ErrorPolicy(on_item_failure=OnItemFailure.STOP)
    state, actions = advance(
        running(2), AttemptsEnded((ended(0, ok=False),)), NOW, policies(errors=errors)
    )
    assert state.stop is not None and state.stop.kind is StopKind.POLICY
    announce, interrupt, commit = actions
    assert isinstance(announce, Announce) and announce.running == 1
    assert isinstance(interrupt, Interrupt)
    assert isinstance(commit, Commit) and not commit.claim and commit.offered == ()
    assert state.free == (0,)  # kept, never offered again


def test_a_retry_wait_does_not_trip_on_item_failure_stop() -> None:
    errors = ErrorPolicy(on_item_failure=OnItemFailure.STOP)
    state, actions = advance(
        running(1),
        AttemptsEnded((ended(0, ok=False),)),
        NOW,
        policies(max_attempts=2, errors=errors),
    )
    assert state.stop is None and state.retry_waits == 1
    assert [type(a) for a in actions] == [Commit]


@pytest.mark.parametrize(("dlq_before", "stops"), [(0, False), (1, True), (2, True)])
def test_max_failures_stops_once_the_dlq_holds_that_many(dlq_before: int, stops: bool) -> None:
    # prodigy stops at failed >= max_failures: the second failed item stops max_failures 2
    errors = ErrorPolicy(max_failures=2)
    state = running(1, dlq=dlq_before)
    state, _ = advance(state, AttemptsEnded((ended(0, ok=False),)), NOW, policies(errors=errors))
    assert (state.stop is not None) is stops


@pytest.mark.parametrize(
    ("succeeded", "dlq_before", "stops"),
    [
        (5, 2, False),  # 3 of 8 failed, but fewer than 10 finished
        (7, 2, False),  # 3 of 10: exactly the threshold is not above it
        (6, 3, True),  # 4 of 10
    ],
)
def test_failure_threshold_applies_after_ten_finished(
    succeeded: int, dlq_before: int, stops: bool
) -> None:
    errors = ErrorPolicy(failure_threshold=0.3)
    state = running(1, succeeded=succeeded, dlq=dlq_before)
    state, _ = advance(state, AttemptsEnded((ended(0, ok=False),)), NOW, policies(errors=errors))
    assert (state.stop is not None) is stops


# -- stops ------------------------------------------------------------------------------------


def test_a_signal_interrupts_the_running_attempts_and_claims_nothing_more() -> None:
    state, actions = advance(running(2), StopRequested("SIGINT"), NOW, policies())
    assert state.stop == Stop(StopKind.SIGNAL, "stopped by SIGINT")
    assert actions == [Announce(state.stop, 2), Interrupt()]
    state, actions = advance(state, AttemptsEnded((ended(0, interrupted=True),)), NOW, policies())
    [commit] = actions
    assert isinstance(commit, Commit) and not commit.claim
    assert commit.finished[0].item_status is ItemStatus.PENDING


def test_the_first_stop_wins() -> None:
    state, _ = advance(running(2), StopRequested("SIGTERM"), NOW, policies())
    for later in (ExecutorBroken("gone"), StopRequested("SIGINT")):
        again, actions = advance(state, later, NOW, policies())
        assert actions == [] and again.stop == state.stop
    errors = ErrorPolicy(on_item_failure=OnItemFailure.STOP)
    again, actions = advance(
        state, AttemptsEnded((ended(0, ok=False),)), NOW, policies(errors=errors)
    )
    assert again.stop == state.stop and [type(a) for a in actions] == [Commit]


def test_a_broken_executor_stops_the_phase() -> None:
    state, actions = advance(running(3), ExecutorBroken("lost the scheduler"), NOW, policies())
    assert state.stop == Stop(StopKind.EXECUTOR, "lost the scheduler")
    assert actions == [Announce(state.stop, 3), Interrupt()]


# -- quiet moments and retries ----------------------------------------------------------------


def quiet(**fields: object) -> MapState:
    return replace(MapState.start(2, succeeded=0, dlq=0, retry_waits=0), **fields)  # type: ignore[arg-type]


def test_nothing_left_to_run_finishes_the_phase() -> None:
    assert advance(quiet(), Quiet(None), NOW, policies())[1] == [Finish(None)]


def test_a_stopped_phase_finishes_once_quiet_even_with_retries_waiting() -> None:
    stop = Stop(StopKind.SIGNAL, "stopped by SIGINT")
    state = quiet(stop=stop, retry_waits=1)
    assert advance(state, Quiet(NOW - 1), NOW, policies())[1] == [Finish(stop)]


def test_a_quiet_phase_sleeps_until_the_next_retry() -> None:
    state = quiet(retry_waits=1)
    assert advance(state, Quiet(NOW + 7), NOW, policies())[1] == [Wait(NOW + 7)]


def test_a_quiet_phase_claims_a_retry_that_is_due() -> None:
    _, actions = advance(quiet(retry_waits=1), Quiet(NOW), NOW, policies())
    assert actions == [Commit((), (0, 1), True, ())]


def test_a_poll_claims_a_due_retry_for_an_idle_slot() -> None:
    state = replace(quiet(retry_waits=1), free=(1,), running=1)
    assert state.wants_due_retries()
    _, actions = advance(state, Poll(NOW - 0.5), NOW, policies())
    assert actions == [Commit((), (1,), True, ())]


@pytest.mark.parametrize(
    "fields",
    [
        {"free": (1,), "running": 1, "retry_waits": 1, "commits": 1},  # a commit under way
        {"free": (), "running": 2, "retry_waits": 1},  # no idle slot
        {"free": (1,), "running": 1, "retry_waits": 0},  # no retry waits
    ],
)
def test_a_poll_without_reason_does_nothing(fields: dict[str, object]) -> None:
    state = quiet(**fields)
    assert not state.wants_due_retries()
    assert advance(state, Poll(NOW - 1), NOW, policies())[1] == []


def test_a_poll_before_the_retry_is_due_does_nothing() -> None:
    state = quiet(free=(1,), running=1, retry_waits=1)
    assert advance(state, Poll(NOW + 1), NOW, policies())[1] == []


# -- a property over whole runs ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    slots=st.integers(1, 6),
    script=st.lists(
        st.tuples(
            st.sampled_from(["commit", "end", "fail", "interrupt", "signal", "broken", "quiet"]),
            st.integers(0, 10),
        ),
        max_size=60,
    ),
)
def test_slots_are_never_lost_or_doubled_and_no_claim_follows_a_stop(
    slots: int, script: list[tuple[str, int]]
) -> None:
    """A driver that plays the store and the executor; the invariants hold at each step."""
    rules = policies(max_attempts=2, errors=ErrorPolicy(max_failures=3))
    state, actions = advance(
        MapState.start(slots, succeeded=0, dlq=0, retry_waits=0), Begin(), NOW, rules
    )
    offered: list[tuple[int, ...]] = []  # transactions under way, oldest first
    slots_running: list[int] = []
    claimed_after_stop = False

    def take(actions: list[object]) -> None:
        nonlocal claimed_after_stop
        for action in actions:
            if isinstance(action, Commit):
                offered.append(action.offered)
                if state.stop is not None and action.claim:
                    claimed_after_stop = True

    take(actions)
    for kind, pick in script:
        if kind == "commit" and offered:
            batch = offered.pop(0)
            claimed = batch[: pick % (len(batch) + 1)]
            slots_running.extend(claimed)
            state, actions = advance(state, Committed(batch, claimed, 0, 1), NOW, rules)
        elif kind in ("end", "fail", "interrupt") and slots_running:
            slot = slots_running.pop(pick % len(slots_running))
            event = AttemptsEnded(
                (ended(slot, ok=kind == "end", interrupted=kind == "interrupt", before=pick % 3),)
            )
            state, actions = advance(state, event, NOW, rules)
        elif kind == "signal":
            state, actions = advance(state, StopRequested("SIGINT"), NOW, rules)
        elif kind == "broken":
            state, actions = advance(state, ExecutorBroken("gone"), NOW, rules)
        elif kind == "quiet" and state.quiet:
            state, actions = advance(state, Quiet(None), NOW, rules)
        else:
            continue
        take(actions)
        in_transactions = [slot for batch in offered for slot in batch]
        every = sorted([*state.free, *in_transactions, *slots_running])
        assert every == list(range(slots))
        assert state.running == len(slots_running) <= slots
        assert state.commits == len(offered)
    assert not claimed_after_stop


def test_the_fast_copy_of_a_state_equals_dataclasses_replace() -> None:
    from mapwise.domain import mapstate

    state = MapState.start(3, succeeded=1, dlq=2, retry_waits=0)
    fast = mapstate.replace(state, running=2, free=(1,), stop=Stop(StopKind.SIGNAL, "x"))
    assert fast == replace(state, running=2, free=(1,), stop=Stop(StopKind.SIGNAL, "x"))
    assert state.running == 0  # the original is untouched


# -- the job's budget (SPEC section 9) --------------------------------------------------------


def spending(slot: int, usd: float) -> Ended:
    """An attempt whose one agent step cost ``usd``."""
    step = StepRecord(
        step_index=0,
        label="claude: x",
        started_at=NOW - 1,
        ended_at=NOW,
        duration=1.0,
        exit_code=0,
        agent=AgentUsage("claude", "s", result_read=True, cost_usd=usd),
    )
    done = result(slot=slot)
    return Ended(
        slot, f"item-{slot}", 0, replace(done, outcome=replace(done.outcome, steps=(step,)))
    )


def budget(usd: float) -> Policies:
    return replace(policies(), max_cost_usd=usd)


def test_spending_below_the_budget_goes_on() -> None:
    state, actions = advance(running(2), AttemptsEnded((spending(0, 0.4),)), NOW, budget(1.0))
    assert state.stop is None and state.cost == pytest.approx(0.4)
    assert [type(a) for a in actions] == [Commit]
    assert actions[0].claim and actions[0].offered == (0,)


def test_reaching_the_budget_starts_nothing_new_and_lets_running_items_finish() -> None:
    state = replace(running(2), cost=0.7)
    state, actions = advance(state, AttemptsEnded((spending(0, 0.3),)), NOW, budget(1.0))
    assert state.stop is not None and state.stop.kind is StopKind.BUDGET
    assert state.stop.reason.startswith("budget:")
    # announced, never interrupted: the other slot's agent finishes its paid-for work
    assert [type(a) for a in actions] == [Announce, Commit]
    assert not any(isinstance(a, Interrupt) for a in actions)
    commit = actions[1]
    assert isinstance(commit, Commit) and not commit.claim and commit.offered == ()
    # the running attempt comes back and is recorded; then the phase ends with the stop
    state, actions = advance(state, AttemptsEnded((spending(1, 0.3),)), NOW, budget(1.0))
    assert [type(a) for a in actions] == [Commit] and not actions[0].claim
    state, _ = advance(state, Committed((), (), 0, 2), NOW, budget(1.0))
    state, actions = advance(state, Quiet(None), NOW, budget(1.0))
    assert actions == [Finish(state.stop)]


def test_a_budget_spent_before_the_run_began_claims_nothing() -> None:
    start = MapState.start(2, succeeded=0, dlq=0, retry_waits=0, cost=5.0)
    state, actions = advance(start, Begin(), NOW, budget(5.0))
    assert state.stop is not None and state.stop.kind is StopKind.BUDGET
    assert isinstance(actions[0], Announce)
    commit = actions[1]
    assert isinstance(commit, Commit) and not commit.claim and commit.offered == ()


def test_no_budget_means_costs_are_not_even_added() -> None:
    state, _ = advance(running(1), AttemptsEnded((spending(0, 9.0),)), NOW, policies())
    assert state.stop is None and state.cost == 0.0
