"""The library face of mapwise: what the CLI calls, and what Python users call.

Sync functions over frozen dataclasses. They raise ``mapwise.errors`` exceptions and
never exit or print; progress reaches callers through ``observers``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mapwise.engine import maintenance
from mapwise.errors import MapwiseError, UserError
from mapwise.reports import DlqEntry, JobListing, JobProgress, JobStatusReport
from mapwise.store import summary
from mapwise.store.checkpoint import CheckpointInfo
from mapwise.store.integrity import Finding, RepairReport
from mapwise.store.jobstore import JobStore
from mapwise.store.ledger import AgentRunRecord
from mapwise.store.paths import (
    JobPaths,
    check_state_dir,
    existing_job_paths,
    list_job_ids,
    resolve_state_dir,
)
from mapwise.store.paths import check_job_id as _check_job_id
from mapwise.store.records import AttemptRecord, ItemRecord

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mapwise.engine.events import Observer
    from mapwise.engine.workspaces import CleanReport
    from mapwise.types import JobResult, ReportWritten, Restored, ResumeOptions, ValidationReport

    # run, resume and validate need the workflow model and the engine; reading commands
    # do not, so those imports wait until a function needs them (``mapwise jobs`` starts fast)
    from mapwise.workflow.loader import LoadedWorkflow

PREVIEW_ITEMS = 5  # items ``validate_workflow`` shows by default


def run_workflow(
    path: str | Path,
    *,
    state_dir: str | Path | None = None,
    job_id: str | None = None,
    max_parallel: int | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
    observers: Sequence[Observer] = (),
    install_signal_handlers: bool = True,
    max_cost_usd: float | None = None,
) -> JobResult:
    """Load the workflow at ``path``, start a job for it and run it to its end.

    ``executor="dask", scheduler="tcp://HOST:PORT"`` runs the map phase on a Dask cluster.
    ``max_cost_usd`` is the job's budget for its agents (``--max-cost``).
    The job's id reaches observers in a ``JobCreated`` event once every check has passed
    and the job exists; ``UserError`` (and no job) when a check refuses it.
    """
    from mapwise.workflow.loader import load_workflow

    return start_loaded(
        load_workflow(path),
        state_dir=state_dir,
        job_id=job_id,
        max_parallel=max_parallel,
        executor=executor,
        scheduler=scheduler,
        observers=observers,
        install_signal_handlers=install_signal_handlers,
        max_cost_usd=max_cost_usd,
    )


def start_loaded(
    loaded: LoadedWorkflow,
    *,
    state_dir: str | Path | None = None,
    job_id: str | None = None,
    max_parallel: int | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
    observers: Sequence[Observer] = (),
    install_signal_handlers: bool = True,
    max_cost_usd: float | None = None,
) -> JobResult:
    """Start a job for an already loaded workflow (the CLI loads first to report warnings).

    The engine's start path makes every check (id, parallelism, placement, an id taken)
    before it writes anything; see ``run_workflow``.
    """
    from mapwise.engine.runner import start_job
    from mapwise.types import StartOptions

    options = StartOptions(
        state_dir=Path(state_dir) if state_dir is not None else None,
        job_id=job_id,
        max_parallel=max_parallel,
        executor=executor,
        scheduler=scheduler,
        observers=observers,
        install_signal_handlers=install_signal_handlers,
        max_cost_usd=max_cost_usd,
    )
    return start_job(loaded, options)


def resume_job(
    job_id: str,
    options: ResumeOptions | None = None,
    state_dir: str | Path | None = None,
    *,
    on_restored: Callable[[Restored], None] | None = None,
) -> JobResult:
    """Continue a stopped job where it stopped: succeeded items never run again.

    A job that is completed with an empty DLQ is not run: its result's ``outcome`` is
    ``JobOutcome.NOTHING_TO_RESUME``.
    """
    from mapwise.engine.resume import resume_job as _resume_job

    return _resume_job(job_id, options, state_dir, on_restored=on_restored)


@contextmanager
def open_job(job_id: str, state_dir: str | Path | None = None) -> Iterator[JobStore]:
    """Open an existing job's store for reading; ``UnknownJobError`` if there is none."""
    paths = existing_job_paths(resolve_state_dir(state_dir), job_id)
    store = JobStore.open(paths, readonly=True)
    try:
        yield store
    finally:
        store.close()


def get_job_progress(job_id: str, state_dir: str | Path | None = None) -> JobProgress:
    """The item counts of any job, running or not."""
    with open_job(job_id, state_dir) as store:
        return summary.summarize(store).progress


def job_status(
    job_id: str, state_dir: str | Path | None = None, *, with_items: bool = False
) -> JobStatusReport:
    """``mapwise status``: counts, phase, runs and durations of a job."""
    with open_job(job_id, state_dir) as store:
        return summary.status_report(store, with_items=with_items)


def list_jobs(
    state_dir: str | Path | None = None, *, include_all: bool = False
) -> list[JobListing]:
    """Jobs in the state directory: the resumable ones, or all with ``include_all``."""
    root = resolve_state_dir(state_dir)
    jobs: list[JobListing] = []
    for job_id in list_job_ids(root):
        try:
            with open_job(job_id, root) as store:
                listing = summary.summarize(store)
        except MapwiseError as error:  # damaged, held exclusively, unreadable: say, go on
            log.warning("job %s cannot be listed: %s", job_id, error)
            continue
        if include_all or listing.resumable:
            jobs.append(listing)
    return jobs


def list_resumable_jobs(state_dir: str | Path | None = None) -> list[JobListing]:
    """Jobs that ``resume`` can continue: interrupted, failed, or completed with a DLQ."""
    return list_jobs(state_dir)


def dlq_list(job_id: str, state_dir: str | Path | None = None) -> list[DlqEntry]:
    """The items in a job's dead letter queue, in item order."""
    with open_job(job_id, state_dir) as store:
        return summary.dlq_entries(store)


@dataclass(frozen=True)
class ItemDetail:
    """One item with its attempt history: ``dlq show`` and ``logs``."""

    item: ItemRecord
    attempts: tuple[AttemptRecord, ...]
    steps: dict[int, tuple[dict[str, Any], ...]]  # attempt id -> its step rows
    agent_runs: tuple[AgentRunRecord, ...] = ()  # its agent step executions, oldest first


def item_detail(job_id: str, item_id: str, state_dir: str | Path | None = None) -> ItemDetail:
    """An item and every attempt of it; ``UserError`` if the job has no such item."""
    with open_job(job_id, state_dir) as store:
        item = store.item_by_id(item_id)
        if item is None:
            raise UserError(f"job {job_id} has no item {item_id!r}")
        attempts = tuple(store.attempts_of(item.index))
        steps = {a.id: tuple(dict(row) for row in store.steps_of(a.id)) for a in attempts}
        return ItemDetail(item, attempts, steps, tuple(store.agent_runs_of(item.index)))


def check_job_id(job_id: str) -> str:
    """``job_id`` if mapwise accepts it as a job's id (it names a folder); else ``UserError``."""
    return _check_job_id(job_id)


def load(path: str | Path) -> LoadedWorkflow:
    """Load and validate a workflow file without running anything."""
    from mapwise.workflow.loader import load_workflow

    return load_workflow(path)


def validate_workflow(
    path: str | Path,
    *,
    preview: int = PREVIEW_ITEMS,
    state_dir: str | Path | None = None,
) -> ValidationReport:
    """Check a workflow and read its items as a run would, without making a job.

    The items go through the same pipeline as a run's freeze (input, json_path, filter,
    sort, distinct, ids, item fields), so an error a run would meet here is met now.
    When setup must run first (it makes the input file, or the input is a command that
    may need what setup makes), the items are not read: the report says they are read
    after setup. ``state_dir`` is checked as a run would check it (``--state-dir``,
    else ``$MAPWISE_STATE_DIR``, else ``./.mapwise``); nothing is written there.
    Raises ``WorkflowError`` or ``UserError`` (exit 2).
    """
    from mapwise.engine.context import base_environment, expanded_workflow
    from mapwise.engine.freeze import resolve_items
    from mapwise.items.input import looks_like_file
    from mapwise.types import ItemPreview, ValidationReport

    loaded = load(path)
    check_state_dir(resolve_state_dir(state_dir))
    wf = loaded.workflow
    if wf.workspace.enabled:  # the repository is checked too, as a run would check it
        from mapwise.workspace.preflight import check_repository

        repo_dir = loaded.base_dir / wf.workspace.repo if wf.workspace.repo else loaded.base_dir
        check_repository(repo_dir=repo_dir, base=wf.workspace.base)
    after_setup = bool(wf.setup.commands) and not (loaded.base_dir / wf.map.input).is_file()
    count: int | None = None
    first: tuple[ItemPreview, ...] = ()
    if not after_setup:
        import os

        expanded = expanded_workflow(wf, os.environ)  # as a run would see it
        items, _ = resolve_items(
            expanded,
            job_id="validate",
            base_dir=loaded.base_dir,
            base_env=base_environment(expanded, "validate"),
            captures={},
        )
        count = len(items)
        first = tuple(ItemPreview(i.index, i.item_id, i.value) for i in items[:preview])
    return ValidationReport(
        name=wf.name,
        path=loaded.path,
        warnings=loaded.warnings,
        setup_steps=len(wf.setup.commands),
        map_steps=len(wf.map.agent_template),
        reduce_steps=len(wf.reduce),
        input=wf.map.input,
        items_after_setup=after_setup,
        input_is_command=not looks_like_file(wf.map.input, loaded.base_dir),
        item_count=count,
        preview=first,
        workspace=wf.workspace if wf.workspace.enabled else None,
    )


def write_report(
    job_id: str,
    output: str | Path | None = None,
    *,
    state_dir: str | Path | None = None,
    trace: str | Path | None = None,
) -> ReportWritten:
    """Write the job's report: one self-contained HTML file (default ``<job_id>.html`` in
    the current folder), and with ``trace`` its Chrome trace-event JSON (SPEC section 10).

    Works on a job in any state, a running one included: the database is only read.
    """
    from mapwise import __version__
    from mapwise.report import page
    from mapwise.report.trace import write_trace
    from mapwise.store.reportrows import read_report, read_steps
    from mapwise.types import ReportWritten

    target = Path(output) if output is not None else Path(f"{job_id}.html")
    shown_dir = str(state_dir) if state_dir is not None else None
    with open_job(job_id, state_dir) as store:
        data = read_report(store, state_dir=shown_dir)
        steps = read_steps(store) if trace is not None else []
    html, bars = page.render(data, __version__)
    written = _write_atomically(target, html.encode("utf-8"))
    trace_path, events = None, 0
    if trace is not None:
        trace_path = Path(trace)
        try:
            events = write_trace(trace_path, data.attempts, steps, data.runs, job_id=job_id)
        except OSError as error:
            raise UserError(f"cannot write {trace_path}: {error.strerror or error}") from error
    return ReportWritten(
        path=target,
        bytes=written,
        attempts=len(data.attempts),
        bars=bars,
        items=data.status.job.progress.total_items,
        trace_path=trace_path,
        trace_events=events,
    )


def _write_atomically(target: Path, data: bytes) -> int:
    """Write ``target`` whole or not at all (a temporary file renamed over it)."""
    try:
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    except OSError as error:
        raise UserError(f"cannot write {target}: {error.strerror or error}") from error
    return len(data)


def _paths(job_id: str, state_dir: str | Path | None) -> JobPaths:
    return existing_job_paths(resolve_state_dir(state_dir), job_id)


def list_checkpoints(job_id: str, state_dir: str | Path | None = None) -> list[CheckpointInfo]:
    """A job's checkpoints, oldest first, each checked against its checksum."""
    return maintenance.list_checkpoints(_paths(job_id, state_dir))


def verify_job(job_id: str, state_dir: str | Path | None = None) -> list[Finding]:
    """Every finding about a job's state (database, checkpoints, invariants)."""
    return maintenance.verify_job(_paths(job_id, state_dir))


def repair_checkpoint(job_id: str, state_dir: str | Path | None = None) -> RepairReport:
    """Repair a damaged job: rebuild its database from the newest valid checkpoint."""
    return maintenance.repair_job(_paths(job_id, state_dir))


def export_job(job_id: str, target: str | Path, state_dir: str | Path | None = None) -> Path:
    """Write a checkpoint file of the job, to import it elsewhere."""
    return maintenance.export_job(_paths(job_id, state_dir), Path(target))


def import_job(
    source: str | Path,
    state_dir: str | Path | None = None,
    *,
    job_id: str | None = None,
    workflow: str | Path | None = None,
) -> str:
    """Make a job from a checkpoint file; returns its id."""
    paths = maintenance.import_job(
        Path(source),
        resolve_state_dir(state_dir),
        job_id=job_id,
        workflow=Path(workflow) if workflow is not None else None,
    )
    return paths.job_id


def dlq_retry(
    job_id: str, item_ids: Sequence[str] | None = None, state_dir: str | Path | None = None
) -> int:
    """Send DLQ items (all, or those named) back to pending; returns how many."""
    return maintenance.dlq_retry(_paths(job_id, state_dir), item_ids or None)


def dlq_purge(
    job_id: str, item_ids: Sequence[str] | None = None, state_dir: str | Path | None = None
) -> int:
    """Give up on DLQ items (all, or those named); returns how many."""
    return purge_dlq_items(job_id, item_ids, state_dir)[0]


def purge_dlq_items(
    job_id: str,
    item_ids: Sequence[str] | None = None,
    state_dir: str | Path | None = None,
    *,
    force: bool = False,
) -> tuple[int, CleanReport | None]:
    """``dlq purge``: how many items were purged and, in worktree mode, what became of
    their worktrees and branches (unmerged work is kept without ``force``)."""
    return maintenance.dlq_purge(_paths(job_id, state_dir), item_ids or None, force=force)


def clean_job(
    job_id: str, state_dir: str | Path | None = None, *, force: bool = False
) -> CleanReport:
    """``mapwise clean``: remove a worktree job's leftover worktrees and item branches."""
    return maintenance.clean_job(_paths(job_id, state_dir), force=force)


def __getattr__(name: str) -> Any:
    """``Event`` and ``JobCreated``, the observers' types, imported when first asked for:
    a reading command never needs them, and its start-up stays short."""
    if name in ("Event", "JobCreated"):
        from mapwise.engine import events

        return getattr(events, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
