"""The map phase: dispatch items to pool slots in frozen order, record results in batches.

A slot is reused only after its last result is committed, and results that finish close
together are committed in one transaction together with the claims of the next items
(by the ``Committer`` thread, so that an fsync overlaps with other slots' commands). So a
crash re-runs at most ``max_parallel`` items, and never one whose success is on record.

The coordinator loop reacts to events on one queue: an attempt ended (a future's
callback), or a transaction committed (the committer). Nothing is reported done before
the transaction that records it has committed.
"""

from __future__ import annotations

import queue
import time
from concurrent.futures import Future
from dataclasses import dataclass

from mapwise.domain.policy import evaluate_error_policy
from mapwise.domain.records import AttemptResult, AttemptTask, LostAttempt, StepsOutcome
from mapwise.domain.retry import decide_after_failure
from mapwise.domain.states import ErrorKind, ItemStatus, Phase
from mapwise.engine.committer import Committed, Committer
from mapwise.engine.context import JobContext
from mapwise.engine.events import ItemFinished, MapProgress, Notice, PhaseStarted, Stopping
from mapwise.executors.attempt import AttemptConfig
from mapwise.executors.base import Executor
from mapwise.store.jobstore import Finished
from mapwise.store.records import Claim

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class MapOutcome:
    """How the map phase of this run ended."""

    interrupted: bool  # a signal stopped it; unfinished items stay pending
    policy_reason: str | None  # the error policy stopped it
    executor_lost: str | None = None  # the executor failed (a Dask scheduler lost, say)


def _crashed(claim: Claim, error: BaseException) -> AttemptResult:
    """A result for an attempt whose runner raised (a bug, not a command failure)."""
    now = time.time()
    outcome = StepsOutcome(
        steps=(),
        captures={},
        error_kind=ErrorKind.SPAWN_ERROR,
        last_error=f"the attempt could not run: {error!r}",
        stderr_tail=repr(error),
    )
    return AttemptResult(
        attempt_id=claim.attempt_id,
        item_index=claim.item.index,
        attempt_no=claim.attempt_no,
        slot=claim.slot,
        host="",
        started_at=now,
        ended_at=now,
        duration=0.0,
        outcome=outcome,
    )


class MapScheduler:
    """Runs the map phase of one run over an executor."""

    def __init__(self, ctx: JobContext, executor: Executor, config: AttemptConfig) -> None:
        self.ctx = ctx
        self.executor = executor
        self.config = config
        self.inflight: dict[Future[AttemptResult], Claim] = {}
        self.free: list[int] = list(range(executor.slots))
        counts = ctx.store.item_counts()
        self.total = sum(counts.values())
        self.succeeded = counts[ItemStatus.SUCCEEDED]
        self.dlq = counts[ItemStatus.DLQ]
        self.retrying = counts[ItemStatus.FAILED]
        self.done_this_run = 0
        self.started = time.monotonic()
        self.captures = ctx.store.job().captures
        self.stopping = False
        self.policy_reason: str | None = None
        self.events: queue.SimpleQueue[
            Future[AttemptResult] | Committed | LostAttempt | BaseException
        ] = queue.SimpleQueue()
        self.pending_commits = 0
        self.lost: list[LostAttempt] = []
        # per-item paths are built as strings: pathlib costs more than the rest of a dispatch
        self._item_logs = str(ctx.paths.logs / "items")
        self._item_files = str(ctx.paths.work / "items")
        self.executor_lost: str | None = None
        set_lost = getattr(executor, "set_lost_handler", None)
        if set_lost is not None:
            set_lost(self.events.put)
        # counts as decided (for the error policy) run ahead of the committed counts
        # (for reports) by the batches under way
        self.decided_succeeded = self.succeeded
        self.decided_dlq = self.dlq

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

    def _submit(self, claims: list[Claim]) -> None:
        for claim in claims:
            if claim.item.status is ItemStatus.FAILED:
                self.retrying -= 1
            future = self.executor.submit(self._task(claim), self.config)
            self.inflight[future] = claim
            future.add_done_callback(self.events.put)

    def _commit(self, committer: Committer, finished: list[Finished]) -> None:
        """Hand results and the idle slots to the committer; they come back as claims."""
        broken = getattr(self.executor, "broken", None)
        claim = not (self.stopping or self.policy_reason or broken)
        offered = self.free if claim else []
        if claim:
            self.free = []
        committer.submit(finished, offered, claim=claim, lost=self.lost)
        self.lost = []
        self.pending_commits += 1

    def _committed(self, done: Committed) -> None:
        """A transaction is durable: report its results and start its claimed items."""
        self.pending_commits -= done.batches
        used = {claim.slot for claim in done.claims}
        self.free += [slot for slot in done.offered if slot not in used]
        self.free.sort()
        self._submit(done.claims)
        ended = [f for f in done.finished if f.item_status is not ItemStatus.PENDING]
        self.succeeded += sum(1 for f in ended if f.item_status is ItemStatus.SUCCEEDED)
        self.dlq += sum(1 for f in ended if f.item_status is ItemStatus.DLQ)
        self.done_this_run += sum(
            1 for f in ended if f.item_status in (ItemStatus.SUCCEEDED, ItemStatus.DLQ)
        )
        for decided in ended:
            result = decided.result
            self.ctx.bus.publish(
                ItemFinished(
                    decided.item_id,
                    decided.item_status.value,
                    result.attempt_no,
                    result.duration,
                    result.outcome.last_error,
                )
            )
        if ended:
            self.ctx.checkpointer.items_finished(len(ended))

    # -- results -------------------------------------------------------------------------

    def _decide(self, claim: Claim, result: AttemptResult, now: float) -> Finished:
        """Apply the retry policy to one result: the item's next state."""
        outcome = result.outcome
        item_id = claim.item.item_id
        if result.interrupted:
            return Finished(
                result, ItemStatus.PENDING, None, counted=False, result_json=None, item_id=item_id
            )
        if outcome.ok:
            self.decided_succeeded += 1
            return Finished(
                result,
                ItemStatus.SUCCEEDED,
                None,
                counted=True,
                result_json={"captures": outcome.captures},
                item_id=item_id,
            )
        decision = decide_after_failure(self.ctx.workflow.map.retry, claim.item.attempts + 1, now)
        if decision.status is ItemStatus.DLQ:
            self.decided_dlq += 1
        else:
            self.retrying += 1
        return Finished(
            result,
            decision.status,
            decision.retry_at,
            counted=True,
            result_json=None,
            item_id=item_id,
        )

    def _collect(self, done: list[Future[AttemptResult]]) -> list[Finished]:
        now = time.time()
        finished: list[Finished] = []
        for future in done:
            claim = self.inflight.pop(future)
            self.free.append(claim.slot)
            try:
                result = future.result()
            except Exception as error:
                result = _crashed(claim, error)
            finished.append(self._decide(claim, result, now))
        self.free.sort()
        return finished

    def _check_policy(self, finished: list[Finished]) -> None:
        new_dlq = sum(1 for f in finished if f.item_status is ItemStatus.DLQ)
        if self.policy_reason or not new_dlq:
            return
        verdict = evaluate_error_policy(
            self.ctx.workflow.error_policy,
            dlq_count=self.decided_dlq,
            finished_count=self.decided_succeeded + self.decided_dlq,
            new_dlq=new_dlq,
        )
        if verdict.stop:
            self.policy_reason = verdict.reason
            self.ctx.bus.publish(Notice(f"stopping the map phase: {verdict.reason}"))
            self.executor.interrupt()

    def _progress(self) -> None:
        self.ctx.bus.publish(
            MapProgress(
                total=self.total,
                succeeded=self.succeeded,
                dlq=self.dlq,
                running=len(self.inflight),
                retrying=self.retrying,
                done_this_run=self.done_this_run,
                elapsed=time.monotonic() - self.started,
            )
        )

    # -- the loop ------------------------------------------------------------------------

    def _check_stop(self) -> None:
        broken = getattr(self.executor, "broken", None)
        if broken and not self.stopping:
            self.executor_lost = broken
            self.stopping = True
            self.ctx.bus.publish(Notice(f"stopping: {broken}"))
            self.executor.interrupt()
            return
        if self.ctx.stop.requested.is_set() and not self.stopping:
            self.stopping = True
            self.ctx.bus.publish(Stopping(self.ctx.stop.signal_name, len(self.inflight)))
            self.executor.interrupt()

    def _idle_wait(self, committer: Committer) -> bool:
        """Nothing runs: wait for the next retry's backoff. False when no work is left."""
        next_at = self.ctx.store.next_retry_at()
        if next_at is None:
            return False
        self.ctx.stop.requested.wait(max(next_at - time.time(), 0.0))
        self._check_stop()
        if not self.stopping:
            self._commit(committer, [])
        return True

    def _quiet(self) -> bool:
        """No attempt runs and no transaction is under way: the store is ours to read."""
        return not self.inflight and self.pending_commits == 0

    def _handle(self, committer: Committer, events: list[object]) -> None:
        done: list[Future[AttemptResult]] = []
        for event in events:
            if isinstance(event, BaseException):
                raise event
            if isinstance(event, Committed):
                self._committed(event)
            elif isinstance(event, LostAttempt):
                self.lost.append(event)
            elif isinstance(event, Future):
                done.append(event)
        if done:
            finished = self._collect(done)
            self._check_policy(finished)
            self._commit(committer, finished)
        self._progress()

    def _drain(self, first: object) -> list[object]:
        events = [first]
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                return events

    def run(self) -> MapOutcome:
        self.ctx.bus.publish(PhaseStarted(Phase.MAP, self.total))
        committer = Committer(
            self.ctx.store, run_no=self.ctx.run_no, host=self.ctx.host, deliver=self.events.put
        )
        try:
            self._loop(committer)
        except BaseException:
            self.executor.interrupt()
            raise
        finally:
            committer.close()
        return MapOutcome(
            interrupted=self.stopping,
            policy_reason=self.policy_reason,
            executor_lost=self.executor_lost,
        )

    def _loop(self, committer: Committer) -> None:
        self._commit(committer, [])
        while True:
            self._check_stop()
            if self._quiet():
                if self.stopping or self.policy_reason or not self._idle_wait(committer):
                    return
                continue
            try:
                first = self.events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                self._maybe_claim_retries(committer)
                continue
            self._handle(committer, self._drain(first))

    def _maybe_claim_retries(self, committer: Committer) -> None:
        """Free slots and a retry whose backoff has ended: claim it without a result."""
        if self.pending_commits or not self.free or not self.retrying:
            return
        if self.stopping or self.policy_reason:
            return
        next_at = self.ctx.store.next_retry_at()
        if next_at is not None and next_at <= time.time():
            self._commit(committer, [])
