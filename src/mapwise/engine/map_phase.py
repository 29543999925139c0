"""The map phase: dispatch items to pool slots in frozen order, record results in batches.

Every decision (an item's next state, when to claim, when to stop, when the phase is
over) is made by the pure ``domain.mapstate.advance``; this module turns what happens
into its events and carries out its actions. Results that finish close together are
committed in one transaction together with the claims of the next items, made by the
scheduler's own thread (``Committer``) after each batch of messages, while the other
slots' commands go on. So a crash re-runs at most ``max_parallel`` items, and never one
whose success is on record.

Everything reaches the coordinator through one queue: an attempt ended or was lost, or
the executor broke (the executor's events), or a merge ended (the merge thread).
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
    MergeEnded,
    Policies,
    Poll,
    Quiet,
    StartMerge,
    Stop,
    StopKind,
    StopRequested,
    Wait,
    advance,
)
from mapwise.domain.mapstate import Committed as BatchCommitted
from mapwise.domain.records import (
    AttemptResult,
    AttemptTask,
    ItemWorkspace,
    LostAttempt,
    MergeResult,
    MergeTask,
    Progress,
    SessionStarted,
    StepDone,
)
from mapwise.domain.states import ItemStatus, Phase
from mapwise.engine.committer import Committed, Committer
from mapwise.engine.context import JobContext
from mapwise.engine.events import ItemFinished, MapProgress, Notice, PhaseStarted, Stopping
from mapwise.engine.workspaces import MergeWorker
from mapwise.executors.attempt import AttemptConfig
from mapwise.executors.base import Executor
from mapwise.store.batches import Batch
from mapwise.store.continuation import ClaimPlan
from mapwise.store.records import Claim
from mapwise.workflow.model import OnConflict

POLL_SECONDS = 0.2
PROGRESS_SECONDS = 0.05  # progress is published at most this often (and once at the end)


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


_Message = (
    _Ended | LostAttempt | _Broken | MergeResult | StepDone | SessionStarted
) | BaseException


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

    def attempt_progress(self, progress: Progress) -> None:
        self._messages.put(progress)


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
        max_cost = ctx.max_cost_usd
        self.policies = Policies(
            ctx.workflow.map.retry,
            ctx.workflow.error_policy,
            ctx.workflow.workspace.on_conflict,
            max_cost_usd=max_cost,
        )
        counts = ctx.store.item_counts()
        self.state = MapState.start(
            executor.slots,
            succeeded=counts[ItemStatus.SUCCEEDED],
            dlq=counts[ItemStatus.DLQ],
            retry_waits=counts[ItemStatus.RETRY_WAIT],
            merges=tuple(ctx.store.merge_queue()) if ctx.workspace else (),
            cost=ctx.store.job_cost().usd if max_cost is not None else 0.0,
        )
        self.merger: MergeWorker | None = None
        self._to_merge: dict[int, MergeTask] = {}  # attempt id -> its commit, until recorded
        # what observers see: counts as committed, not as decided
        self.total = sum(counts.values())
        self.succeeded = counts[ItemStatus.SUCCEEDED]
        self.dlq = counts[ItemStatus.DLQ]
        self.done_this_run = 0
        self.started = time.monotonic()
        self._progress_at = 0.0  # when progress was last published (monotonic)
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
                batch = Batch(
                    finished=action.finished,
                    lost=action.lost,
                    settled=action.settled,
                    free_slots=action.offered,
                    claim=action.claim,
                )
                committer.submit(batch)
            case StartMerge(task=task):
                assert self.merger is not None
                self.merger.submit(task)
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
        elif action.stop.kind is StopKind.BUDGET:
            waiting = f"; waiting for {action.running} running item(s)" if action.running else ""
            self.ctx.bus.publish(Notice(f"no new items: {action.stop.reason}{waiting}"))
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
            workspace=self._workspace(claim),
            resume=claim.resume,
            sessions=claim.sessions or {},
            budget_usd=claim.budget,
        )

    def _workspace(self, claim: Claim) -> ItemWorkspace | None:
        """Where the attempt runs in worktree mode: continued after an interruption, else
        reset to the item's start commit (none yet: the job branch's head)."""
        ws = self.ctx.workspace
        if ws is None:
            return None
        item = claim.item
        assert item.branch is not None and item.worktree is not None
        return ItemWorkspace(
            repo=str(ws.repo),
            worktree=item.worktree,
            branch=item.branch,
            job_branch=ws.job_branch,
            start=None if claim.continues else (item.start_commit or ws.job_branch),
            subdir=ws.subdir,
        )

    def _committed(self, committer: Committer, done: Committed) -> None:
        """A transaction is durable: start its claimed items and report its results."""
        retries = sum(1 for c in done.claims if c.item.status is ItemStatus.RETRY_WAIT)
        claimed = tuple(claim.slot for claim in done.claims)
        merges = tuple(
            self._to_merge.pop(f.result.attempt_id)
            for f in done.finished
            if f.item_status is ItemStatus.MERGING
        )
        self._advance(
            committer,
            BatchCommitted(tuple(done.offered), claimed, retries, done.batches, merges),
        )
        for claim in done.claims:
            self.inflight[claim.attempt_id] = claim
            self.executor.submit(self._task(claim), self.config)
        self._report(done)

    def _report(self, done: Committed) -> None:
        ended = [f for f in done.finished if f.item_status is not ItemStatus.PENDING]
        for decided in ended:
            result = decided.result
            self._count(decided.item_status)
            self.ctx.bus.publish(
                ItemFinished(
                    decided.item_id,
                    decided.item_status,
                    result.attempt_no,
                    result.duration,
                    result.outcome.last_error,
                )
            )
        for settled in done.settled:
            self._count(settled.item_status)
            task = settled.task
            self.ctx.bus.publish(
                ItemFinished(
                    task.item_id, settled.item_status, task.attempt_no, 0.0, settled.detail
                )
            )
        statuses = [f.item_status for f in ended] + [s.item_status for s in done.settled]
        self.done_this_run += sum(1 for status in statuses if status.finished)
        if statuses:
            self.ctx.checkpointer.items_finished(len(statuses))

    def _count(self, status: ItemStatus) -> None:
        if status is ItemStatus.SUCCEEDED:
            self.succeeded += 1
        elif status is ItemStatus.DLQ:
            self.dlq += 1

    def _progress(self, *, final: bool = False) -> None:
        """Publish the counts: at most every PROGRESS_SECONDS, so that a job of short
        items does not pay for a display update per transaction; always at the end."""
        now = time.monotonic()
        if not final and now - self._progress_at < PROGRESS_SECONDS:
            return
        self._progress_at = now
        self.ctx.bus.publish(
            MapProgress(
                total=self.total,
                succeeded=self.succeeded,
                dlq=self.dlq,
                running=len(self.inflight),
                retrying=self.state.retry_waits,
                done_this_run=self.done_this_run,
                elapsed=now - self.started,
            )
        )

    # -- the loop ------------------------------------------------------------------------

    def _handle(self, committer: Committer, messages: list[_Message]) -> None:
        ended: list[Ended] = []
        progress = [m for m in messages if isinstance(m, StepDone | SessionStarted)]
        if progress:  # ahead of the ends of their attempts, in the committer's order
            committer.submit(Batch(progress=progress, counted=False))
        for message in messages:
            if isinstance(message, BaseException):
                raise message
            if isinstance(message, StepDone | SessionStarted):
                continue
            if isinstance(message, LostAttempt):
                self._advance(committer, AttemptLost(message))
            elif isinstance(message, _Broken):
                self._advance(committer, ExecutorBroken(message.reason))
            elif isinstance(message, MergeResult):
                self._advance(committer, MergeEnded(message))
            else:
                claim = self.inflight.pop(message.task.attempt_id)
                self._note_commit(claim, message.result)
                ended.append(
                    Ended(claim.slot, claim.item.item_id, claim.item.attempts, message.result)
                )
        if ended:
            self._advance(committer, AttemptsEnded(tuple(ended)))
        self._progress()

    def _note_commit(self, claim: Claim, result: AttemptResult) -> None:
        """A commit to merge once the attempt's success is recorded (worktree mode)."""
        if result.commit is None or result.interrupted or not result.outcome.ok:
            return
        item = claim.item
        assert item.branch is not None
        self._to_merge[result.attempt_id] = MergeTask(
            item_index=item.index,
            item_id=item.item_id,
            attempt_id=result.attempt_id,
            branch=item.branch,
            commit=result.commit,
            counted=item.attempts + 1,
            attempt_no=claim.attempt_no,
        )

    def _drain(self, first: _Message) -> list[_Message]:
        messages = [first]
        while True:
            try:
                messages.append(self.messages.get_nowait())
            except queue.Empty:
                return messages

    def run(self) -> MapOutcome:
        self.ctx.bus.publish(PhaseStarted(Phase.MAP, self.total))
        ws = self.ctx.workspace
        committer = Committer(
            self.ctx.store,
            run_no=self.ctx.run_no,
            host=self.ctx.host,
            pool=ws.pool_for(self.ctx.job_id) if ws else None,
            plan=ClaimPlan.of(
                self.ctx.workflow.map.agent_template,
                continue_failed=self.ctx.workflow.map.retry.continue_,
                item_budget=self.ctx.workflow.map.max_cost_usd,
            ),
        )
        if ws is not None:
            keep = self.policies.on_conflict is OnConflict.DLQ
            self.merger = MergeWorker(ws, self.messages.put, keep_conflicts=keep)
        try:
            self._advance(committer, Begin())
            self._commit(committer)
            while self.finish is None:
                self._step(committer)
                self._commit(committer)
        except BaseException:
            self.executor.interrupt()
            raise
        finally:
            if self.merger is not None:
                self.merger.close()
        assert self.finish is not None
        self._progress(final=True)
        return MapOutcome(self.finish.stop)

    def _commit(self, committer: Committer) -> None:
        """Make the transactions this turn asked for, and start what they claimed."""
        while committer.waiting:
            done = committer.flush()
            if done is not None:
                self._committed(committer, done)

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
