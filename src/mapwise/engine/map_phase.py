"""The map phase: dispatch items to pool slots in frozen order, record results in batches.

Every decision (an item's next state, when to claim, when to stop, when the phase is
over) is made by the pure ``domain.mapstate.advance``; this module turns what happens
into its events and carries out its actions. Results that finish close together are
committed in one transaction together with the claims of the next items (by the
``Committer`` thread, so that an fsync overlaps with other slots' commands). So a crash
re-runs at most ``max_parallel`` items, and never one whose success is on record.

Everything reaches the coordinator through one queue: an attempt ended or was lost, the
executor broke (the executor's events), or a transaction committed (the committer).
Nothing is reported done before the transaction that records it has committed.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

from mapwise.domain.mapstate import (
    Action,
    Announce,
    AttemptLost,
    AttemptsEnded,
    Begin,
    Commit,
    Ended,
    Event,
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
)
from mapwise.domain.mapstate import Committed as BatchCommitted
from mapwise.domain.records import AttemptResult, AttemptTask, LostAttempt
from mapwise.domain.states import ItemStatus, Phase
from mapwise.engine.committer import Committed, Committer
from mapwise.engine.context import JobContext
from mapwise.engine.events import ItemFinished, MapProgress, Notice, PhaseStarted, Stopping
from mapwise.executors.attempt import AttemptConfig
from mapwise.executors.base import Executor
from mapwise.store.records import Claim

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class MapOutcome:
    """How the map phase of this run ended: every item done, or a stop."""

    stop: Stop | None


@dataclass(frozen=True)
class _Ended:
    task: AttemptTask
    result: AttemptResult


@dataclass(frozen=True)
class _Broken:
    reason: str


_Message = _Ended | LostAttempt | _Broken | Committed | BaseException


class _Inbox:
    """The executor's events, onto the coordinator's queue (they come from any thread)."""

    def __init__(self, messages: queue.SimpleQueue[_Message]) -> None:
        self._messages = messages

    def attempt_ended(self, task: AttemptTask, result: AttemptResult) -> None:
        self._messages.put(_Ended(task, result))

    def attempt_lost(self, lost: LostAttempt) -> None:
        self._messages.put(lost)

    def executor_broken(self, reason: str) -> None:
        self._messages.put(_Broken(reason))


class MapScheduler:
    """Runs the map phase of one run over an executor."""

    def __init__(
        self,
        ctx: JobContext,
        executor: Executor,
        config: AttemptConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ctx = ctx
        self.executor = executor
        self.config = config
        self.clock = clock
        self.policies = Policies(ctx.workflow.map.retry, ctx.workflow.error_policy)
        counts = ctx.store.item_counts()
        self.state = MapState.start(
            executor.slots,
            succeeded=counts[ItemStatus.SUCCEEDED],
            dlq=counts[ItemStatus.DLQ],
            retry_waits=counts[ItemStatus.RETRY_WAIT],
        )
        # what observers see: counts as committed, not as decided
        self.total = sum(counts.values())
        self.succeeded = counts[ItemStatus.SUCCEEDED]
        self.dlq = counts[ItemStatus.DLQ]
        self.done_this_run = 0
        self.started = time.monotonic()
        self.captures = ctx.store.job().captures
        self.inflight: dict[int, Claim] = {}  # attempt id -> its claim
        self.messages: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self.finish: Finish | None = None
        self._signalled = False
        # per-item paths are built as strings: pathlib costs more than the rest of a dispatch
        self._item_logs = str(ctx.paths.logs / "items")
        self._item_files = str(ctx.paths.work / "items")
        executor.start(_Inbox(self.messages))

    # -- applying decisions ----------------------------------------------------------------

    def _advance(self, committer: Committer, event: Event) -> None:
        self.state, actions = advance(self.state, event, self.clock(), self.policies)
        for action in actions:
            self._apply(committer, action)

    def _apply(self, committer: Committer, action: Action) -> None:
        match action:
            case Commit():
                committer.submit(
                    list(action.finished),
                    list(action.offered),
                    claim=action.claim,
                    lost=list(action.lost),
                )
            case Interrupt():
                self.executor.interrupt()
            case Announce():
                self._announce(action)
            case Wait(until=until):
                self.ctx.stop.requested.wait(max(until - self.clock(), 0.0))
            case Finish():
                self.finish = action

    def _announce(self, action: Announce) -> None:
        if action.stop.kind is StopKind.SIGNAL:
            self.ctx.bus.publish(Stopping(self.ctx.stop.signal_name, action.running))
        elif action.stop.kind is StopKind.POLICY:
            self.ctx.bus.publish(Notice(f"stopping the map phase: {action.stop.reason}"))
        else:
            self.ctx.bus.publish(Notice(f"stopping: {action.stop.reason}"))

    # -- dispatch ------------------------------------------------------------------------

    def _task(self, claim: Claim) -> AttemptTask:
        index, attempt_no = claim.item.index, claim.attempt_no
        return AttemptTask(
            job_id=self.ctx.job_id,
            attempt_id=claim.attempt_id,
            item_index=claim.item.index,
            item_id=claim.item.item_id,
            item=claim.item.value,
            attempt_no=claim.attempt_no,
            slot=claim.slot,
            log_path=f"{self._item_logs}/{index}/attempt-{attempt_no}.log",
            item_file=f"{self._item_files}/{index}-{attempt_no}.json",
            captures=self.captures,
        )

    def _committed(self, committer: Committer, done: Committed) -> None:
        """A transaction is durable: start its claimed items and report its results."""
        retries = sum(1 for c in done.claims if c.item.status is ItemStatus.RETRY_WAIT)
        claimed = tuple(claim.slot for claim in done.claims)
        self._advance(
            committer, BatchCommitted(tuple(done.offered), claimed, retries, done.batches)
        )
        for claim in done.claims:
            self.inflight[claim.attempt_id] = claim
            self.executor.submit(self._task(claim), self.config)
        self._report(done)

    def _report(self, done: Committed) -> None:
        ended = [f for f in done.finished if f.item_status is not ItemStatus.PENDING]
        for decided in ended:
            if decided.item_status is ItemStatus.SUCCEEDED:
                self.succeeded += 1
            elif decided.item_status is ItemStatus.DLQ:
                self.dlq += 1
            result = decided.result
            self.ctx.bus.publish(
                ItemFinished(
                    decided.item_id,
                    decided.item_status,
                    result.attempt_no,
                    result.duration,
                    result.outcome.last_error,
                )
            )
        self.done_this_run += sum(1 for f in ended if f.item_status.finished)
        if ended:
            self.ctx.checkpointer.items_finished(len(ended))

    def _progress(self) -> None:
        self.ctx.bus.publish(
            MapProgress(
                total=self.total,
                succeeded=self.succeeded,
                dlq=self.dlq,
                running=len(self.inflight),
                retrying=self.state.retry_waits,
                done_this_run=self.done_this_run,
                elapsed=time.monotonic() - self.started,
            )
        )

    # -- the loop ------------------------------------------------------------------------

    def _handle(self, committer: Committer, messages: list[_Message]) -> None:
        ended: list[Ended] = []
        for message in messages:
            if isinstance(message, BaseException):
                raise message
            if isinstance(message, Committed):
                self._committed(committer, message)
            elif isinstance(message, LostAttempt):
                self._advance(committer, AttemptLost(message))
            elif isinstance(message, _Broken):
                self._advance(committer, ExecutorBroken(message.reason))
            else:
                claim = self.inflight.pop(message.task.attempt_id)
                ended.append(
                    Ended(claim.slot, claim.item.item_id, claim.item.attempts, message.result)
                )
        if ended:
            self._advance(committer, AttemptsEnded(tuple(ended)))
        self._progress()

    def _drain(self, first: _Message) -> list[_Message]:
        messages = [first]
        while True:
            try:
                messages.append(self.messages.get_nowait())
            except queue.Empty:
                return messages

    def run(self) -> MapOutcome:
        self.ctx.bus.publish(PhaseStarted(Phase.MAP, self.total))
        committer = Committer(
            self.ctx.store, run_no=self.ctx.run_no, host=self.ctx.host, deliver=self.messages.put
        )
        try:
            self._advance(committer, Begin())
            while self.finish is None:
                self._step(committer)
        except BaseException:
            self.executor.interrupt()
            raise
        finally:
            committer.close()
        assert self.finish is not None
        return MapOutcome(self.finish.stop)

    def _step(self, committer: Committer) -> None:
        if self.ctx.stop.requested.is_set() and not self._signalled:
            self._signalled = True
            self._advance(committer, StopRequested(self.ctx.stop.signal_name))
        if self.state.quiet:  # the store is ours to read: no transaction is under way
            self._advance(committer, Quiet(self.ctx.store.next_retry_at()))
            return
        try:
            first = self.messages.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if self.state.wants_due_retries():
                self._advance(committer, Poll(self.ctx.store.next_retry_at()))
            return
        self._handle(committer, self._drain(first))
