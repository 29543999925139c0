"""Resuming a stopped job: restore what its state says, then run it from there.

Resume is a sweep over stored state (rq's ``StartedJobRegistry.cleanup``): process groups
a dead run left alive are killed, attempts left ``running`` become ``interrupted`` (they do
not use up a retry), and the phases continue from the first unfinished step or item.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from mapwise.domain.states import ItemStatus, JobStatus
from mapwise.engine import context as ctxmod
from mapwise.engine.freeze import input_file_changed
from mapwise.engine.maintenance import ensure_sound, rewind_to_checkpoint
from mapwise.engine.placement import choose_placement
from mapwise.engine.runner import execute, job_result
from mapwise.engine.workspaces import JobWorkspace, restore_job_worktree
from mapwise.errors import UserError, WorkflowChangedError
from mapwise.executors.orphans import job_dir, kill_job_processes, kill_orphans
from mapwise.limits import MAX_PARALLEL_LIMIT
from mapwise.reports import JobOutcome
from mapwise.store.checkpoint import remove_temporaries
from mapwise.store.jobstore import JobStore
from mapwise.store.lock import JobLock
from mapwise.store.paths import existing_job_paths, resolve_state_dir
from mapwise.store.records import JobRecord
from mapwise.store.summary import summarize
from mapwise.types import JobResult, Restored, ResumeOptions
from mapwise.workflow.loader import LoadedWorkflow, load_workflow, parse_workflow


def _choose_workflow(
    job: JobRecord, options: ResumeOptions, notices: list[str]
) -> tuple[LoadedWorkflow, bool]:
    """The workflow to resume with: frozen, or the edited file. True if it was reloaded."""
    if options.reload_workflow and options.keep_workflow:
        raise UserError("choose one of --reload-workflow and --keep-workflow")
    frozen = parse_workflow(job.workflow_source, path=job.workflow_path)
    path = Path(job.workflow_path)
    try:
        current = path.read_bytes()
    except OSError:
        if options.reload_workflow:
            raise UserError(f"--reload-workflow: cannot read {path}") from None
        notices.append(f"the workflow file {path} is gone; using the copy frozen in the job")
        return frozen, False
    if hashlib.sha256(current).hexdigest() == job.workflow_sha256:
        return frozen, False
    if options.reload_workflow:
        notices.append(f"using the edited workflow {path} (the items stay frozen)")
        return load_workflow(path), True
    if options.keep_workflow:
        notices.append(f"{path} changed since the job started; using the frozen copy")
        return frozen, False
    raise WorkflowChangedError(
        f"the workflow file {path} changed since job {job.job_id} started; resume with "
        "--reload-workflow to use the edited agent template, reduce, retry and parallelism "
        "(the items stay frozen), or --keep-workflow to use the copy frozen in the job"
    )


def _max_parallel(
    job: JobRecord, loaded: LoadedWorkflow, options: ResumeOptions, reloaded: bool
) -> int:
    if options.max_parallel is not None:
        return options.max_parallel
    stored = job.options.get("max_parallel")
    if stored and not reloaded:
        return int(stored)
    try:
        return loaded.workflow.resolved_max_parallel()
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def _restore(
    store: JobStore, options: ResumeOptions, notices: list[str]
) -> tuple[LoadedWorkflow, int, Restored]:
    """Sweep the stored state and decide how to run; returns the restored summary."""
    job = store.job()
    loaded, reloaded = _choose_workflow(job, options, notices)
    if reloaded:
        store.replace_workflow(source=loaded.source, sha256=loaded.sha256, path=str(loaded.path))
    max_parallel = _max_parallel(job, loaded, options, reloaded)
    if options.max_parallel is not None or reloaded:
        store.set_options({"max_parallel": max_parallel})
    if options.max_cost_usd is not None:
        store.set_options({"max_cost_usd": options.max_cost_usd})
    identity = job.options.get("input_file")
    if identity and input_file_changed(identity):
        notices.append(
            f"the input {identity['path']} changed since the items were frozen; "
            "the frozen items are kept"
        )
    killed = tuple(kill_orphans(store.paths.slots))
    strays = kill_job_processes(job.job_id, job_dir(store.paths.root))
    if strays:
        notices.append(
            f"killed {len(strays)} process(es) of this job's commands that a dead run "
            "left running without a note"
        )
    workspace = JobWorkspace.from_options(job.options, store.paths)
    if workspace is not None:
        notices += restore_job_worktree(workspace, anything_merged=store.anything_merged())
    store.close_dead_runs()
    interrupted = store.interrupted_attempts()
    store.interrupt_running()
    requeued = store.requeue_dlq() if options.retry_failed else 0
    progress = summarize(store).progress
    runs = store.runs()
    restored = Restored(
        job_id=job.job_id,
        phase=store.job().phase,
        succeeded=progress.completed_items,
        dlq=progress.failed_items,
        remaining=progress.pending_items,
        interrupted_attempts=interrupted,
        requeued=requeued,
        run_no=len(runs) + 1,
        spent_seconds=sum((r.ended_at or store.job().updated_at) - r.started_at for r in runs),
        killed_orphans=killed,
        notices=tuple(notices),
    )
    return loaded, max_parallel, restored


def nothing_to_do(store: JobStore) -> bool:
    """A completed job with an empty DLQ has nothing left to resume."""
    job = store.job()
    counts = store.item_counts()
    waiting = (ItemStatus.PENDING, ItemStatus.RUNNING, ItemStatus.RETRY_WAIT, ItemStatus.MERGING)
    unfinished = sum(counts[status] for status in waiting)
    return job.status is JobStatus.COMPLETED and counts[ItemStatus.DLQ] == 0 and not unfinished


def resume_job(
    job_id: str,
    options: ResumeOptions | None = None,
    state_dir: str | Path | None = None,
    *,
    on_restored: Callable[[Restored], None] | None = None,
) -> JobResult:
    """Continue a stopped job where it stopped: succeeded items and steps never run again."""
    options = options or ResumeOptions()
    if options.reload_workflow and options.keep_workflow:
        raise UserError("choose one of --reload-workflow and --keep-workflow")
    ctxmod.check_max_cost(options.max_cost_usd)
    if options.max_parallel is not None and options.max_parallel < 1:
        raise UserError("--max-parallel must be at least 1")
    if options.max_parallel is not None and options.max_parallel > MAX_PARALLEL_LIMIT:
        raise UserError(f"--max-parallel must be at most {MAX_PARALLEL_LIMIT:,}")
    paths = existing_job_paths(resolve_state_dir(state_dir), job_id)
    with JobLock(paths.lock).acquire(job_id):
        notices: list[str] = []
        if options.from_checkpoint is not None:
            backup = rewind_to_checkpoint(paths, options.from_checkpoint)
            notices.append(
                f"state rebuilt from checkpoint {options.from_checkpoint}; "
                f"the previous state is kept in {backup}"
            )
        ensure_sound(paths)
        # a checkpoint write a crash cut short, even the one after a job's last step: under
        # the lock no writer can be alive
        remove_temporaries(paths.checkpoints)
        store = JobStore.open(paths)
        try:
            if nothing_to_do(store):
                outcome = JobOutcome.NOTHING_TO_RESUME
                return job_result(store, JobStatus.COMPLETED, "nothing to resume", outcome, 0)
            loaded, max_parallel, restored = _restore(store, options, notices)
            placement = choose_placement(
                options.executor, options.scheduler, loaded.workflow, store.job().options
            )
            store.set_options(placement.to_options())
            if on_restored is not None:
                on_restored(restored)
            return execute(
                store,
                loaded.workflow,
                base_dir=loaded.base_dir,
                max_parallel=max_parallel,
                placement=placement,
                observers=options.observers,
                install_signal_handlers=options.install_signal_handlers,
                resumed=True,
            )
        finally:
            store.close()
