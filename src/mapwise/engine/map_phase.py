"""The map phase: dispatch items to pool slots in frozen order, record results in batches.

A slot is reused only after its last result is committed, and results that finish close
together are committed in one transaction together with the claims of the next items.
So a crash re-runs at most ``max_parallel`` items, and never one whose success is on record.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass

from mapwise.domain.policy import evaluate_error_policy
from mapwise.domain.records import AttemptResult, AttemptTask, StepsOutcome
from mapwise.domain.retry import decide_after_failure
from mapwise.domain.states import ErrorKind, ItemStatus, Phase
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

    # -- dispatch ------------------------------------------------------------------------

    def _task(self, claim: Claim) -> AttemptTask:
        paths = self.ctx.paths
        return AttemptTask(
            job_id=self.ctx.job_id,
            attempt_id=claim.attempt_id,
            item_index=claim.item.index,
            item_id=claim.item.item_id,
            item=claim.item.value,
            attempt_no=claim.attempt_no,
            slot=claim.slot,
            log_path=str(paths.attempt_log(claim.item.index, claim.attempt_no)),
            item_file=str(paths.work / "items" / f"{claim.item.index}-{claim.attempt_no}.json"),
            captures=self.captures,
        )

    def _submit(self, claims: list[Claim]) -> None:
        for claim in claims:
            self.free.remove(claim.slot)
            if claim.item.status is ItemStatus.FAILED:
                self.retrying -= 1
            future = self.executor.submit(self._task(claim), self.config)
            self.inflight[future] = claim

    def _commit(self, finished: list[Finished]) -> None:
        claim = not (self.stopping or self.policy_reason)
        claims = self.ctx.store.commit_batch(
            finished,
            free_slots=self.free if claim else [],
            run_no=self.ctx.run_no,
            host=self.ctx.host,
            now=time.time(),
            claim=claim,
        )
        self._submit(claims)
        ended = sum(1 for f in finished if f.item_status is not ItemStatus.PENDING)
        if ended:
            self.ctx.checkpointer.items_finished(ended)

    # -- results -------------------------------------------------------------------------

    def _decide(self, claim: Claim, result: AttemptResult, now: float) -> Finished:
        """Apply the retry policy to one result: the item's next state."""
        outcome = result.outcome
        if result.interrupted:
            return Finished(result, ItemStatus.PENDING, None, counted=False, result_json=None)
        if outcome.ok:
            self.succeeded += 1
            self.done_this_run += 1
            return Finished(
                result,
                ItemStatus.SUCCEEDED,
                None,
                counted=True,
                result_json={"captures": outcome.captures},
            )
        decision = decide_after_failure(self.ctx.workflow.map.retry, claim.item.attempts + 1, now)
        if decision.status is ItemStatus.DLQ:
            self.dlq += 1
            self.done_this_run += 1
        else:
            self.retrying += 1
        return Finished(result, decision.status, decision.retry_at, counted=True, result_json=None)

    def _collect(self, done: set[Future[AttemptResult]]) -> list[Finished]:
        now = time.time()
        finished: list[Finished] = []
        for future in done:
            claim = self.inflight.pop(future)
            self.free.append(claim.slot)
            try:
                result = future.result()
            except Exception as error:
                result = _crashed(claim, error)
            decided = self._decide(claim, result, now)
            finished.append(decided)
            if decided.item_status is not ItemStatus.PENDING:
                self.ctx.bus.publish(
                    ItemFinished(
                        claim.item.item_id,
                        decided.item_status.value,
                        result.attempt_no,
                        result.duration,
                        result.outcome.last_error,
                    )
                )
        self.free.sort()
        return finished

    def _check_policy(self, finished: list[Finished]) -> None:
        new_dlq = sum(1 for f in finished if f.item_status is ItemStatus.DLQ)
        if self.policy_reason or not new_dlq:
            return
        verdict = evaluate_error_policy(
            self.ctx.workflow.error_policy,
            dlq_count=self.dlq,
            finished_count=self.succeeded + self.dlq,
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
        if self.ctx.stop.requested.is_set() and not self.stopping:
            self.stopping = True
            self.ctx.bus.publish(Stopping(self.ctx.stop.signal_name, len(self.inflight)))
            self.executor.interrupt()

    def _idle_wait(self) -> bool:
        """Nothing runs: wait for the next retry's backoff. False when no work is left."""
        next_at = self.ctx.store.next_retry_at()
        if next_at is None:
            return False
        self.ctx.stop.requested.wait(max(next_at - time.time(), 0.0))
        self._check_stop()
        if not self.stopping:
            self._commit([])
        return True

    def run(self) -> MapOutcome:
        self.ctx.bus.publish(PhaseStarted(Phase.MAP, self.total))
        self._commit([])
        self._progress()
        while True:
            self._check_stop()
            if not self.inflight:
                if self.stopping or self.policy_reason or not self._idle_wait():
                    break
                continue
            done, _ = wait(self.inflight, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            if not done:
                self._maybe_claim_retries()
                continue
            finished = self._collect(done)
            self._check_policy(finished)
            self._commit(finished)
            self._progress()
        return MapOutcome(interrupted=self.stopping, policy_reason=self.policy_reason)

    def _maybe_claim_retries(self) -> None:
        """Free slots and a retry whose backoff has ended: claim it without a result."""
        if self.free and self.retrying and not (self.stopping or self.policy_reason):
            next_at = self.ctx.store.next_retry_at()
            if next_at is not None and next_at <= time.time():
                self._commit([])
