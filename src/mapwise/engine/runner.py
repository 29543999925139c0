"""Running a job's phases in order, from wherever its state says it stands.

``start_job`` checks and makes a new job and runs it; a resume opens an existing one and
calls ``execute`` the same way. Every phase reads where to begin from the store, so the
same code serves a first run and a resume.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mapwise.domain.mapstate import StopKind
from mapwise.domain.states import ItemStatus, JobStatus, Phase, RunOutcome
from mapwise.engine import context as ctxmod
from mapwise.engine.checkpointer import Checkpointer, policy_from_environment
from mapwise.engine.context import JobContext
from mapwise.engine.events import EventBus, ItemsFrozen, JobCreated, JobStarted, Notice, Observer
from mapwise.engine.freeze import freeze
from mapwise.engine.map_phase import MapScheduler
from mapwise.engine.merge_phase import run_merge, wants_merge, with_target_branch
from mapwise.engine.phases import run_reduce, run_setup
from mapwise.engine.placement import Placement, build_executor, choose_placement
from mapwise.engine.signals import StopController
from mapwise.engine.workspaces import (
    OPTIONS_KEY,
    JobWorkspace,
    create_job_worktree,
    plan_workspace,
    remove_free_worktrees,
)
from mapwise.errors import ExecutorError, MapwiseError, StateDamagedError, UserError
from mapwise.executors.attempt import AttemptConfig, close_slot_notes
from mapwise.executors.base import Executor
from mapwise.executors.logsink import make_private_dirs
from mapwise.executors.orphans import job_dir, kill_job_processes, kill_orphans
from mapwise.items.input import InputStopped
from mapwise.limits import MAX_PARALLEL_LIMIT
from mapwise.reports import JobOutcome
from mapwise.store.jobstore import JobStore
from mapwise.store.lock import JobLock, refuse_if_held
from mapwise.store.paths import (
    JobPaths,
    check_job_id,
    check_state_dir,
    job_paths,
    new_job_id,
    resolve_state_dir,
    unwritable,
)
from mapwise.types import JobResult, StartOptions
from mapwise.workflow.loader import LoadedWorkflow
from mapwise.workflow.model import Workflow

STOP_CHECKPOINT_SECONDS = 0.3  # how long a run stopped by a signal waits for its checkpoint


def refuse_existing(paths: JobPaths) -> None:
    """A new run may not reuse a job's id: exit 3 if a live process holds it, else 2.

    The holder is only read, never taken: this job is someone else's.
    """
    refuse_if_held(paths.lock, paths.job_id)
    raise UserError(
        f"job {paths.job_id!r} already exists in {paths.root.parent.parent}; "
        f"resume it with `mapwise resume {paths.job_id}` or choose another --job-id"
    )


def _new_store(loaded: LoadedWorkflow, paths: JobPaths, stored_options: dict[str, Any]) -> JobStore:
    """The job's folder and database; in worktree mode its branch and worktree too.

    The repository is checked before anything is written; a job whose worktree could
    not be made is no job, and nothing of it is left.
    """
    if paths.root.exists():
        refuse_existing(paths)
    workspace = plan_workspace(loaded.workflow, loaded.base_dir, paths)
    if workspace is not None:
        stored_options = {**stored_options, **workspace.to_options()}
        stored_options = with_target_branch(stored_options, OPTIONS_KEY, workspace.repo)
    try:  # a read-only state directory is said so, not a traceback
        make_private_dirs(paths.root.parent)
        store = JobStore.create(
            paths,
            workflow_name=loaded.workflow.name,
            workflow_path=str(loaded.path),
            workflow_source=loaded.source,
            workflow_sha256=loaded.sha256,
            options=stored_options,
        )
    except OSError as exc:
        error = unwritable(exc, paths.root)
        if error is None:
            raise
        raise error from exc
    if workspace is not None:
        try:
            create_job_worktree(workspace)
        except BaseException:
            store.close()
            shutil.rmtree(paths.root, ignore_errors=True)
            raise
    return store


def start_job(loaded: LoadedWorkflow, options: StartOptions) -> JobResult:
    """Check, create a job for ``loaded`` and run it to its end (or until it is stopped).

    Every check that can refuse a new job (its id, its parallelism, where it runs, an id
    already taken) is made here, before anything is written, so that a refused start
    leaves no half-made job; ``JobCreated`` then tells observers the job exists.
    """
    if options.max_parallel is not None and options.max_parallel < 1:
        raise UserError("--max-parallel must be at least 1")
    if options.max_parallel is not None and options.max_parallel > MAX_PARALLEL_LIMIT:
        raise UserError(f"--max-parallel must be at most {MAX_PARALLEL_LIMIT:,}")
    ctxmod.check_max_cost(options.max_cost_usd)
    state_dir = check_state_dir(resolve_state_dir(options.state_dir))
    job_id = check_job_id(options.job_id or new_job_id(loaded.workflow.name))
    paths = job_paths(state_dir, job_id)
    try:
        max_parallel = options.max_parallel or loaded.workflow.resolved_max_parallel()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    placement = choose_placement(options.executor, options.scheduler, loaded.workflow)
    stored: dict[str, Any] = {"max_parallel": max_parallel, **placement.to_options()}
    if options.max_cost_usd is not None:
        stored["max_cost_usd"] = options.max_cost_usd
    store = _new_store(loaded, paths, stored)
    EventBus(options.observers).publish(JobCreated(job_id))
    try:
        with JobLock(paths.lock).acquire(job_id):
            return execute(
                store,
                loaded.workflow,
                base_dir=loaded.base_dir,
                max_parallel=max_parallel,
                placement=placement,
                observers=options.observers,
                install_signal_handlers=options.install_signal_handlers,
                resumed=False,
            )
    finally:
        store.close()


def job_result(
    store: JobStore, status: JobStatus, reason: str | None, outcome: JobOutcome, run_no: int
) -> JobResult:
    counts = store.item_counts()
    job = store.job()
    total = sum(counts.values())
    return JobResult(
        job_id=job.job_id,
        status=status,
        phase=job.phase,
        total_items=total,
        succeeded=counts[ItemStatus.SUCCEEDED],
        dlq=counts[ItemStatus.DLQ],
        pending=total
        - counts[ItemStatus.SUCCEEDED]
        - counts[ItemStatus.DLQ]
        - counts[ItemStatus.PURGED],
        reason=reason,
        outcome=outcome,
        run_no=run_no,
        cost=store.job_cost(),
        result_branch=(job.options.get("workspace") or {}).get("job_branch"),
    )


class _Run:
    """One run of a job: the phases in order, and how the run ends."""

    def __init__(self, ctx: JobContext, *, resumed: bool) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.resumed = resumed

    def end(
        self, run_outcome: RunOutcome, status: JobStatus, reason: str | None, outcome: JobOutcome
    ) -> JobResult:
        """Record the run's end (``run_outcome``, stored) and say how it ended (``outcome``)."""
        phase = Phase.DONE if status is JobStatus.COMPLETED else None
        self.store.end_run(
            self.ctx.run_no, outcome=run_outcome, status=status, reason=reason, phase=phase
        )
        return job_result(self.store, status, reason, outcome, self.ctx.run_no)

    def interrupted(self) -> JobResult:
        self.store.interrupt_running()
        reason = f"stopped by {self.ctx.stop.signal_name}"
        outcome = JobOutcome.interrupted_by(self.ctx.stop.signum)
        return self.end(RunOutcome.INTERRUPTED, JobStatus.INTERRUPTED, reason, outcome)

    def _items_left(self) -> bool:
        """Whether any item is still to run or to merge (not succeeded, DLQ or purged)."""
        counts = self.store.item_counts()
        done = (ItemStatus.SUCCEEDED, ItemStatus.DLQ, ItemStatus.PURGED)
        return any(n for status, n in counts.items() if status not in done)

    def failed(self, reason: str, outcome: JobOutcome = JobOutcome.FAILED) -> JobResult:
        return self.end(RunOutcome.FAILED, JobStatus.FAILED, reason, outcome)

    def run(self) -> JobResult:
        job = self.store.job()
        if job.phase is Phase.SETUP:
            outcome = run_setup(self.ctx)
            if self.ctx.stop.requested.is_set():
                return self.interrupted()
            if not outcome.ok:
                return self.failed(f"setup {outcome.last_error}")
            try:
                total = freeze(self.ctx)
            except InputStopped:
                return self.interrupted()  # nothing frozen: a resume reads the input again
            self.ctx.bus.publish(ItemsFrozen(total))
            # the boundary's checkpoint is taken off the dispatch path: the frozen list is
            # committed already, and a million items' snapshot takes seconds
            self.ctx.checkpointer.now(wait=False)
        if self.store.job().phase is Phase.MAP and (result := self._map()) is not None:
            return result
        if self.store.job().phase is not Phase.MERGE:
            outcome = run_reduce(self.ctx)
            if self.ctx.stop.requested.is_set():
                return self.interrupted()
            if not outcome.ok:
                return self.failed(f"reduce {outcome.last_error}")
        if wants_merge(self.ctx) and (result := self._merge()) is not None:
            return result
        dlq = self.store.item_counts()[ItemStatus.DLQ]
        ending = JobOutcome.COMPLETED_WITH_DLQ if dlq else JobOutcome.COMPLETED
        return self.end(RunOutcome.COMPLETED, JobStatus.COMPLETED, None, ending)

    def _merge(self) -> JobResult | None:
        """The ``merge:`` block, after reduce; a JobResult when the run ends there."""
        self.store.set_status(JobStatus.RUNNING, phase=Phase.MERGE)
        outcome = run_merge(self.ctx)
        if self.ctx.stop.requested.is_set():
            return self.interrupted()
        if not outcome.ok:
            return self.failed(f"merge {outcome.last_error}")
        return None

    def _map(self) -> JobResult | None:
        """Run the map phase; a JobResult when the run ends there, None to go on to reduce."""
        config = _attempt_config(self.ctx)
        try:
            executor = build_executor(
                self.ctx.placement,
                self.ctx.max_parallel,
                self.ctx.job_id,
                job_dir(self.ctx.paths.root),
            )
        except ExecutorError as error:
            return self.executor_failed(str(error))
        try:
            if (refused := self._check_workers(executor)) is not None:
                return refused
            if self.resumed and (stopped := self._kill_leftovers(executor)) is not None:
                return stopped
            outcome = MapScheduler(self.ctx, executor, config).run()
        finally:
            executor.shutdown()
            if config.slots_dir is not None:
                close_slot_notes(config.slots_dir)
        stop = outcome.stop
        if stop is not None and stop.kind is StopKind.BUDGET and not self._items_left():
            stop = None  # the budget held nothing back: every item had finished
        if stop is not None and stop.kind in (StopKind.POLICY, StopKind.BUDGET):
            self.store.interrupt_running()
            spent = stop.kind is StopKind.BUDGET
            return self.failed(stop.reason, JobOutcome.BUDGET_SPENT if spent else JobOutcome.FAILED)
        if stop is not None and stop.kind is StopKind.EXECUTOR:
            return self.executor_failed(stop.reason)
        if stop is not None:
            return self.interrupted()
        if self.ctx.workspace is not None:
            remove_free_worktrees(self.ctx.workspace, self.store)
        self.store.set_status(JobStatus.RUNNING, phase=Phase.REDUCE)
        self.ctx.checkpointer.now()
        return None

    def _check_workers(self, executor: Executor) -> JobResult | None:
        """Worktree mode: every worker must see the repository at the same path."""
        ws = self.ctx.workspace
        if ws is None:
            return None
        try:
            if executor.sees_folder(str(ws.repo)) and executor.sees_folder(str(ws.pool)):
                return None
            reason = (
                f"workspace: worktree needs the repository {ws.repo} and the job's worktree "
                f"folder {ws.pool} at the same paths on every worker (a shared file system); "
                "some workers do not see them"
            )
        except ExecutorError as error:
            reason = str(error)
        return self.executor_failed(reason)

    def _kill_leftovers(self, executor: Executor) -> JobResult | None:
        """Before a resumed map phase: kill what a dead run left where the executor runs."""
        try:
            killed = executor.kill_leftovers()
        except ExecutorError as error:
            return self.executor_failed(str(error))
        if killed:
            self.ctx.bus.publish(
                Notice(f"killed {killed} process(es) a dead run left on the workers")
            )
        return None

    def executor_failed(self, reason: str) -> JobResult:
        """The executor could not run (or lost its cluster): the job stops, resumable.

        Commands the lost workers ran on this machine are killed now; those elsewhere are
        killed by the next resume, which asks every worker of its cluster.
        """
        kill_job_processes(self.ctx.job_id, job_dir(self.ctx.paths.root))
        self.store.interrupt_running()
        self.ctx.bus.publish(Notice(f"error: {reason}"))
        return self.end(
            RunOutcome.INTERRUPTED, JobStatus.INTERRUPTED, reason, JobOutcome.EXECUTOR_LOST
        )


def _attempt_config(ctx: JobContext) -> AttemptConfig:
    spec = ctx.workflow.map
    ctx.paths.slots.mkdir(mode=0o700, parents=True, exist_ok=True)
    return AttemptConfig(
        steps=spec.agent_template,
        base_dir=ctx.base_dir,
        base_env=ctx.base_env,
        workflow_env=ctx.workflow.env,
        claude_command=ctx.claude_command,
        item_timeout=spec.timeout,
        kill_grace=ctx.kill_grace,
        slots_dir=ctx.paths.slots,
        workspace_setup=ctx.workflow.workspace.setup,
        codex_command=ctx.codex_command,
    )


def _stop_at_once(paths: JobPaths, signum: int) -> None:
    """The second signal: kill every running command now and exit; resume fixes the rest.

    Safe because the state is consistent at every instant: attempts left ``running`` are
    found and marked interrupted by the next resume, as after a ``kill -9``.
    """
    kill_orphans(paths.slots)
    message = (
        f"mapwise: second signal: stopped at once; resume with: mapwise resume {paths.job_id}\n"
    )
    os.write(2, message.encode())
    os._exit(128 + signum)


def execute(
    store: JobStore,
    workflow: Workflow,
    *,
    base_dir: Path,
    max_parallel: int,
    placement: Placement,
    observers: Sequence[Observer],
    install_signal_handlers: bool,
    resumed: bool,
) -> JobResult:
    """Run the job held in ``store`` from where it stands; the caller holds its lock."""
    paths = store.paths
    workflow = ctxmod.expanded_workflow(workflow, os.environ)  # env: against this machine's
    run_no = store.begin_run(pid=os.getpid(), host=socket.gethostname(), now=time.time())
    checkpointer = Checkpointer(paths, policy_from_environment())
    bus = EventBus(observers)
    stop = StopController(on_second=lambda signum: _stop_at_once(paths, signum))
    workspace = JobWorkspace.from_options(store.job().options, paths)
    base_env = ctxmod.base_environment(workflow, paths.job_id, job_dir(paths.root))
    source_dir = base_dir
    if workspace is not None:
        base_dir = workspace.base_dir
        base_env |= {
            "MAPWISE_WORKTREE": str(workspace.job_worktree),
            "MAPWISE_BRANCH": workspace.job_branch,
        }
    ctx = JobContext(
        job_id=paths.job_id,
        paths=paths,
        store=store,
        workflow=workflow,
        base_dir=base_dir,
        run_no=run_no,
        host=socket.gethostname(),
        max_parallel=max_parallel,
        placement=placement,
        kill_grace=ctxmod.kill_grace(os.environ),
        claude_command=ctxmod.claude_command(os.environ),
        bus=bus,
        stop=stop,
        base_env=base_env,
        checkpointer=checkpointer,
        workspace=workspace,
        source_dir=source_dir if workspace is not None else None,
        codex_command=ctxmod.codex_command(os.environ),
        max_cost_usd=ctxmod.max_cost(store.job().options, workflow),
    )
    paths.running_marker.touch(mode=0o600)  # tells a crash from a clean exit (see verify)
    if install_signal_handlers:
        stop.install()
    run = _Run(ctx, resumed=resumed)
    database = _file_identity(paths.database)
    try:
        bus.publish(JobStarted(paths.job_id, run_no, resumed))
        result = run.run()
    except MapwiseError as error:
        with contextlib.suppress(MapwiseError):
            run.failed(str(error).splitlines()[0])  # may fail too (a full disk)
        raise
    finally:
        stop.restore()
        # a stop by signal must exit at once: its final checkpoint gets a moment, not
        # the minutes a snapshot of millions of rows takes (the database is the truth)
        checkpointer.close(within=STOP_CHECKPOINT_SECONDS if stop.requested.is_set() else None)
        paths.running_marker.unlink(missing_ok=True)
    _refuse_if_lost(paths, database)
    return result


def _file_identity(path: Path) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        stat = path.stat()
        return stat.st_dev, stat.st_ino
    return None


def _refuse_if_lost(paths: JobPaths, database: tuple[int, int] | None) -> None:
    """The job's database must still be the file the run wrote: a job folder deleted (or
    replaced) while its job ran has lost what the run recorded, whatever the run saw.

    What the run made again in a deleted folder (checkpoints, work files) is removed, so
    that no half of a deleted job is left for ``jobs`` to list.
    """
    if database is None or _file_identity(paths.database) == database:
        return
    if not paths.database.exists():
        shutil.rmtree(paths.root, ignore_errors=True)
    raise StateDamagedError(
        f"job {paths.job_id}: its folder {paths.root} was deleted (or its database replaced) "
        "while the job ran; what this run did is lost and the job is gone"
    )
