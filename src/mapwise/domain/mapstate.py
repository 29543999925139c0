"""The map phase's decisions as one pure function: ``advance(state, event, now)``.

The scheduler (``engine/map_phase.py``) turns what happens (attempts that ended, a
transaction that committed, a signal, a lost worker, a broken executor, a quiet moment)
into events, and applies the actions this module returns; it decides nothing itself.
Time is an argument and nothing here does I/O, so every combination of retry, backoff,
error policy and stop is a test of milliseconds (huey's ``execute(task, timestamp)``).

Slots: a slot is free, offered to a transaction (which may claim an item for it), or
running an attempt. A slot is offered again only once the transaction that recorded its
last result has committed, which is what bounds a crash's re-runs to ``max_parallel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mapwise.domain.policy import evaluate_error_policy
from mapwise.domain.records import (
    AttemptResult,
    Finished,
    LostAttempt,
    MergeResult,
    MergeTask,
    Settled,
)
from mapwise.domain.retry import decide_after_failure
from mapwise.domain.states import ErrorKind, ItemStatus
from mapwise.workflow.model import ErrorPolicy, OnConflict, RetryPolicy


class StopKind(StrEnum):
    """Why the map phase stops before its items are done; the first reason wins."""

    SIGNAL = "signal"  # SIGINT/SIGTERM: unfinished items stay pending; job interrupted
    POLICY = "policy"  # the error policy tripped: job failed, resumable
    EXECUTOR = "executor"  # the executor failed (a lost cluster): job interrupted
    BUDGET = "budget"  # the job's agents spent its budget: running items finish; job failed


@dataclass(frozen=True)
class Stop:
    """A stop and the words to show and record for it."""

    kind: StopKind
    reason: str


@dataclass(frozen=True)
class Policies:
    """The workflow's rules the decisions follow."""

    retry: RetryPolicy
    errors: ErrorPolicy
    on_conflict: OnConflict = OnConflict.RERUN  # worktree mode: what a merge conflict does
    max_cost_usd: float | None = None  # the job's budget (--max-cost, error_policy)


@dataclass(frozen=True)
class MapState:
    """What the decisions depend on; counts are as decided, ahead of the commits."""

    free: tuple[int, ...]  # idle slots, not offered to any transaction, sorted
    running: int = 0  # attempts in flight
    commits: int = 0  # transactions asked for and not yet committed
    retry_waits: int = 0  # items waiting out a retry backoff
    succeeded: int = 0
    dlq: int = 0
    lost: tuple[LostAttempt, ...] = ()  # lost executions to record with the next commit
    stop: Stop | None = None
    merges: tuple[MergeTask, ...] = ()  # worktree mode: the merge queue, in finishing order
    merging: MergeTask | None = None  # the merge under way (one at a time)
    cost: float = 0.0  # USD the job's agents spent, as far as attempts have come back

    @classmethod
    def start(
        cls,
        slots: int,
        *,
        succeeded: int,
        dlq: int,
        retry_waits: int,
        merges: tuple[MergeTask, ...] = (),
        cost: float = 0.0,
    ) -> MapState:
        return cls(
            free=tuple(range(slots)),
            succeeded=succeeded,
            dlq=dlq,
            retry_waits=retry_waits,
            merges=merges,
            cost=cost,
        )

    @property
    def merges_go_on(self) -> bool:
        """Merges run unless the phase stops for a signal, the policy or the executor: a
        spent budget lets running items finish, and merging costs nothing."""
        return self.stop is None or self.stop.kind is StopKind.BUDGET

    @property
    def quiet(self) -> bool:
        """No attempt runs, no transaction and no merge is under way, and none is due.

        A stopping phase starts no merge: the queue waits in the database for the resume.
        """
        merges_due = bool(self.merges) and self.merges_go_on
        idle = self.running == 0 and self.commits == 0 and self.merging is None
        return idle and not merges_due

    def wants_due_retries(self) -> bool:
        """Idle slots and a waiting retry: worth asking the store when the next is due."""
        return self.commits == 0 and bool(self.free) and self.retry_waits > 0 and not self.stop


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Begin:
    """The phase starts: offer every slot to the first transaction."""


@dataclass(frozen=True)
class Ended:
    """One attempt came back from the executor."""

    slot: int
    item_id: str
    counted_before: int  # the item's attempts that counted before this one
    result: AttemptResult


@dataclass(frozen=True)
class AttemptsEnded:
    """Attempts that came back together: their decisions go into one transaction."""

    ended: tuple[Ended, ...]


@dataclass(frozen=True)
class AttemptLost:
    """An execution a dead worker lost; the attempt itself runs again elsewhere."""

    lost: LostAttempt


@dataclass(frozen=True)
class Committed:
    """A transaction committed: results recorded, items claimed for some offered slots."""

    offered: tuple[int, ...]
    claimed: tuple[int, ...]  # the offered slots that got an item
    claimed_retries: int  # of the claimed items, those that waited out a backoff
    batches: int  # how many asked-for transactions this one merged
    merges: tuple[MergeTask, ...] = ()  # items it recorded as waiting for their merge


@dataclass(frozen=True)
class MergeEnded:
    """The merge queue finished one item: merged, or not."""

    result: MergeResult


@dataclass(frozen=True)
class StopRequested:
    """The first SIGINT or SIGTERM arrived."""

    signal_name: str


@dataclass(frozen=True)
class ExecutorBroken:
    """The executor cannot run attempts any more."""

    reason: str


@dataclass(frozen=True)
class Quiet:
    """Nothing runs and nothing is being committed; the store's earliest retry time."""

    next_retry_at: float | None


@dataclass(frozen=True)
class Poll:
    """No event for a while; the store's earliest retry time (see ``wants_due_retries``)."""

    next_retry_at: float | None


Event = (
    Begin
    | AttemptsEnded
    | AttemptLost
    | Committed
    | MergeEnded
    | StopRequested
    | ExecutorBroken
    | Quiet
    | Poll
)


# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    """Ask for one transaction: record results, claim items for the offered slots."""

    finished: tuple[Finished, ...]
    offered: tuple[int, ...]
    claim: bool
    lost: tuple[LostAttempt, ...]
    settled: tuple[Settled, ...] = ()  # merge outcomes to record


@dataclass(frozen=True)
class StartMerge:
    """Merge one item's commit into the job branch (the merge queue's one merge)."""

    task: MergeTask


@dataclass(frozen=True)
class Interrupt:
    """Stop the running attempts (TERM, a grace period, KILL); they come back interrupted."""


@dataclass(frozen=True)
class Announce:
    """Tell the observers why the phase stops."""

    stop: Stop
    running: int  # attempts that will come back interrupted


@dataclass(frozen=True)
class Wait:
    """Sleep until a retry is due (or a stop arrives)."""

    until: float


@dataclass(frozen=True)
class Finish:
    """The map phase of this run is over."""

    stop: Stop | None


Action = Commit | StartMerge | Interrupt | Announce | Wait | Finish


def replace(state: MapState, **changes: object) -> MapState:
    """``dataclasses.replace`` for the hot path: a copy of ``state`` with ``changes``.

    ``dataclasses.replace`` goes through ``__init__`` and costs about 11 µs for a state of
    this size; the map phase makes two or three copies per item. Every field of a frozen
    dataclass lives in its ``__dict__``, so copying that is the same copy, without checks
    (the callers name real fields: the tests run every path).
    """
    copy = object.__new__(MapState)
    copy.__dict__.update(state.__dict__)
    copy.__dict__.update(changes)
    return copy


# -- decisions ------------------------------------------------------------------------------


def decide(ended: Ended, retry: RetryPolicy, now: float) -> Finished:
    """An attempt's result and the item's next state under the retry policy.

    In worktree mode a success that left a commit waits for its merge (``MERGING``); the
    item succeeds only once ``settle`` says its commit is on the job branch.
    """
    result = ended.result
    if result.interrupted:
        return Finished(result, ItemStatus.PENDING, None, False, None, ended.item_id)
    if result.outcome.ok:
        captures = {"captures": result.outcome.captures}
        status = ItemStatus.SUCCEEDED if result.commit is None else ItemStatus.MERGING
        return Finished(result, status, None, True, captures, ended.item_id)
    decision = decide_after_failure(retry, ended.counted_before + 1, now)
    return Finished(result, decision.status, decision.retry_at, True, None, ended.item_id)


def settle(result: MergeResult, policies: Policies, now: float) -> Settled:
    """An item's state after the merge queue tried its commit.

    A conflict under ``on_conflict: rerun`` counts as a failed attempt (the one that made
    the commit): the item runs again from the job branch's new head at once, unless its
    attempts are spent. Under ``dlq``, or after a git failure, it goes to the DLQ with its
    branch and worktree kept.
    """
    task = result.task
    if result.merged:
        return Settled(task, ItemStatus.SUCCEEDED, None, None, "")
    if not result.conflicts:
        lines = result.error.strip().splitlines() or ["git gave no reason"]
        detail = f"the merge failed: {lines[-1]}"
        return Settled(task, ItemStatus.DLQ, None, ErrorKind.WORKSPACE, detail)
    files = ", ".join(result.conflicts[:5]) + (" ..." if len(result.conflicts) > 5 else "")
    detail = f"merge conflict with the job branch in {files}"
    kind = ErrorKind.MERGE_CONFLICT
    if policies.on_conflict is OnConflict.DLQ:
        return Settled(task, ItemStatus.DLQ, None, kind, detail, result.conflicts, result.worktree)
    decision = decide_after_failure(policies.retry, task.counted, now)
    retry_at = now if decision.status is ItemStatus.RETRY_WAIT else None
    return Settled(task, decision.status, retry_at, kind, detail, result.conflicts)


def _stopped(state: MapState, stop: Stop) -> tuple[MapState, list[Action]]:
    if state.stop is not None:
        return state, []
    return replace(state, stop=stop), [Announce(stop, state.running), Interrupt()]


def _spent(result: AttemptResult) -> float:
    """What an attempt's agents cost (its steps recorded ahead of it included)."""
    return sum(r.agent.cost_usd or 0.0 for r in result.outcome.steps if r.agent is not None)


def _budget(state: MapState, policies: Policies) -> tuple[MapState, list[Action]]:
    """Once the job's recorded cost reaches its budget, no new item starts; the running
    ones finish (their agents' work is paid for), then the job ends failed."""
    limit = policies.max_cost_usd
    if limit is None or state.stop is not None or state.cost < limit:
        return state, []
    reason = (
        f"budget: the job's agents spent ${state.cost:.2f} of its ${limit:.2f} budget"
        " (resume with a higher --max-cost to go on)"
    )
    stop = Stop(StopKind.BUDGET, reason)
    return replace(state, stop=stop), [Announce(stop, state.running)]


def _police(state: MapState, new_dlq: int, policies: Policies) -> tuple[MapState, list[Action]]:
    """After items went to the DLQ: stop the phase if the error policy says so."""
    if not new_dlq or state.stop is not None:
        return state, []
    verdict = evaluate_error_policy(
        policies.errors,
        dlq_count=state.dlq,
        finished_count=state.succeeded + state.dlq,
        new_dlq=new_dlq,
    )
    if not verdict.stop:
        return state, []
    return _stopped(state, Stop(StopKind.POLICY, verdict.reason))


def _commit(
    state: MapState, finished: tuple[Finished, ...], settled: tuple[Settled, ...] = ()
) -> tuple[MapState, Commit]:
    """Ask for a transaction; the free slots go with it unless the phase is stopping."""
    claim = state.stop is None
    offered = state.free if claim else ()
    commit = Commit(finished, offered, claim, state.lost, settled)
    free = () if claim else state.free
    return replace(state, free=free, commits=state.commits + 1, lost=()), commit


def _next_merge(state: MapState) -> tuple[MapState, list[Action]]:
    """Start the queue's next merge when none is under way (never while stopping)."""
    if state.merging is not None or not state.merges or not state.merges_go_on:
        return state, []
    task, *rest = state.merges
    return replace(state, merging=task, merges=tuple(rest)), [StartMerge(task)]


def _ended(
    state: MapState, event: AttemptsEnded, policies: Policies, now: float
) -> tuple[MapState, list[Action]]:
    finished = tuple(decide(e, policies.retry, now) for e in event.ended)
    statuses = [f.item_status for f in finished]
    new_dlq = statuses.count(ItemStatus.DLQ)
    state = replace(
        state,
        free=tuple(sorted(state.free + tuple(e.slot for e in event.ended))),
        running=state.running - len(event.ended),
        succeeded=state.succeeded + statuses.count(ItemStatus.SUCCEEDED),
        dlq=state.dlq + new_dlq,
        retry_waits=state.retry_waits + statuses.count(ItemStatus.RETRY_WAIT),
    )
    state, actions = _police(state, new_dlq, policies)
    if policies.max_cost_usd is not None:
        spent = sum(_spent(e.result) for e in event.ended)
        state, more = _budget(replace(state, cost=state.cost + spent), policies)
        actions += more
    state, commit = _commit(state, finished)
    return state, [*actions, commit]


def _merge_ended(
    state: MapState, event: MergeEnded, policies: Policies, now: float
) -> tuple[MapState, list[Action]]:
    settled = settle(event.result, policies, now)
    status = settled.item_status
    new_dlq = int(status is ItemStatus.DLQ)
    state = replace(
        state,
        merging=None,
        succeeded=state.succeeded + int(status is ItemStatus.SUCCEEDED),
        dlq=state.dlq + new_dlq,
        retry_waits=state.retry_waits + int(status is ItemStatus.RETRY_WAIT),
    )
    state, actions = _police(state, new_dlq, policies)
    state, commit = _commit(state, (), (settled,))
    state, merge = _next_merge(state)
    return state, [*actions, commit, *merge]


def _committed(state: MapState, event: Committed) -> tuple[MapState, list[Action]]:
    returned = tuple(slot for slot in event.offered if slot not in event.claimed)
    state = replace(
        state,
        free=tuple(sorted(state.free + returned)),
        running=state.running + len(event.claimed),
        commits=state.commits - event.batches,
        retry_waits=state.retry_waits - event.claimed_retries,
        merges=state.merges + event.merges,
    )
    return _next_merge(state)


def _quiet(state: MapState, event: Quiet, now: float) -> tuple[MapState, list[Action]]:
    if state.stop is not None or event.next_retry_at is None:
        return state, [Finish(state.stop)]
    if event.next_retry_at > now:
        return state, [Wait(event.next_retry_at)]
    state, commit = _commit(state, ())
    return state, [commit]


def _poll(state: MapState, event: Poll, now: float) -> tuple[MapState, list[Action]]:
    due = event.next_retry_at is not None and event.next_retry_at <= now
    if not (due and state.wants_due_retries()):
        return state, []
    state, commit = _commit(state, ())
    return state, [commit]


def advance(
    state: MapState, event: Event, now: float, policies: Policies
) -> tuple[MapState, list[Action]]:
    """The next state of the map phase and what the scheduler must do, in order."""
    match event:
        case Begin():
            state, spent = _budget(state, policies)  # spent before: nothing starts
            state, commit = _commit(state, ())
            state, merge = _next_merge(state)
            return state, [*spent, commit, *merge]
        case AttemptsEnded():
            return _ended(state, event, policies, now)
        case AttemptLost(lost=lost):
            return replace(state, lost=(*state.lost, lost)), []
        case Committed():
            return _committed(state, event)
        case MergeEnded():
            return _merge_ended(state, event, policies, now)
        case StopRequested(signal_name=name):
            return _stopped(state, Stop(StopKind.SIGNAL, f"stopped by {name}"))
        case ExecutorBroken(reason=reason):
            return _stopped(state, Stop(StopKind.EXECUTOR, reason))
        case Quiet():
            return _quiet(state, event, now)
        case Poll():
            return _poll(state, event, now)
    raise TypeError(f"not a map-phase event: {event!r}")  # pragma: no cover
