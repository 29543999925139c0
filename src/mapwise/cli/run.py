"""``mapwise run`` and ``mapwise validate``."""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from mapwise import api
from mapwise.cli.common import echo_err, executor_option, scheduler_option, state_dir_option
from mapwise.domain.states import JobStatus
from mapwise.errors import UserError
from mapwise.reports import human_seconds
from mapwise.store.paths import check_job_id, job_paths, new_job_id, resolve_state_dir

if TYPE_CHECKING:
    from mapwise.engine.resume import ResumeOptions
    from mapwise.engine.runner import JobResult

PREVIEW_ITEMS = 5


def resume_command(job_id: str, state_dir: str | None) -> str:
    """The exact command that resumes a job, for the user to copy."""
    parts = ["mapwise", "resume", job_id]
    if state_dir is not None:
        parts += ["--state-dir", state_dir]
    return shlex.join(parts)


def summary_line(result: JobResult) -> str:
    counts = f"{result.succeeded} succeeded, {result.dlq} in the DLQ, {result.pending} pending"
    text = f"job {result.job_id} {result.status.value}: {counts} (of {result.total_items})"
    if result.reason:
        text += f"\n  reason: {result.reason}"
    return text


def report_end(result: JobResult, state_dir: str | None, wall: float) -> None:
    echo_err(summary_line(result) + f" in {human_seconds(wall)}")
    if result.status is not JobStatus.COMPLETED or result.dlq:
        echo_err(f"  resume with: {resume_command(result.job_id, state_dir)}")
    if result.dlq:
        echo_err(f"  failed items: mapwise dlq list {result.job_id}")


def _chosen_job_id(job_id: str) -> str:
    try:
        return check_job_id(job_id)
    except UserError as error:
        raise UserError(f"--job-id: {error}") from None


@click.command("run")
@click.argument("workflow", type=click.Path(dir_okay=False))
@state_dir_option
@click.option("--job-id", default=None, help="Choose the job's id (default: name-time-random).")
@click.option(
    "--max-parallel", type=click.IntRange(min=1), default=None, help="Override map.max_parallel."
)
@executor_option
@scheduler_option
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
def run_command(
    workflow: str,
    state_dir: str | None,
    job_id: str | None,
    max_parallel: int | None,
    executor: str | None,
    scheduler: str | None,
    quiet: bool,
) -> None:
    """Start a job for WORKFLOW and run setup, map and reduce."""
    from mapwise.engine.placement import choose_placement
    from mapwise.engine.runner import refuse_existing
    from mapwise.render import ProgressDisplay

    loaded = api.load(workflow)
    chosen = _chosen_job_id(job_id) if job_id is not None else new_job_id(loaded.workflow.name)
    paths = job_paths(resolve_state_dir(state_dir), chosen)
    if paths.root.exists():
        refuse_existing(paths)
    choose_placement(executor, scheduler, loaded.workflow)  # refuse before any job exists
    echo_err(f"job {chosen}")
    for warning in loaded.warnings:
        echo_err(f"warning: {warning}")
    display = ProgressDisplay(sys.stderr, live=sys.stderr.isatty(), quiet=quiet)
    started = time.monotonic()
    try:
        result = api.start_loaded(
            loaded,
            state_dir=state_dir,
            job_id=chosen,
            max_parallel=max_parallel,
            executor=executor,
            scheduler=scheduler,
            observers=[display],
        )
    finally:
        display.close()
    report_end(result, state_dir, time.monotonic() - started)
    sys.exit(result.exit_code)


@click.command("resume")
@click.argument("job_id")
@state_dir_option
@click.option("--retry-failed", is_flag=True, help="Also send the DLQ's items back to pending.")
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1),
    default=None,
    help="Override the job's parallelism.",
)
@click.option(
    "--reload-workflow",
    is_flag=True,
    help="Use the edited workflow file (agent template, reduce, retry, parallelism).",
)
@click.option(
    "--keep-workflow",
    is_flag=True,
    help="Use the workflow frozen in the job even though the file changed.",
)
@click.option(
    "--from-checkpoint",
    type=int,
    default=None,
    metavar="N",
    help="Rebuild the state from checkpoint N first (the current state is backed up).",
)
@executor_option
@scheduler_option
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
def resume_command_cli(
    job_id: str,
    state_dir: str | None,
    retry_failed: bool,
    max_parallel: int | None,
    reload_workflow: bool,
    keep_workflow: bool,
    from_checkpoint: int | None,
    executor: str | None,
    scheduler: str | None,
    quiet: bool,
) -> None:
    """Continue JOB_ID where it stopped; succeeded items never run again."""
    from mapwise.engine.resume import ResumeOptions

    options = ResumeOptions(
        retry_failed=retry_failed,
        max_parallel=max_parallel,
        reload_workflow=reload_workflow,
        keep_workflow=keep_workflow,
        from_checkpoint=from_checkpoint,
        executor=executor,
        scheduler=scheduler,
    )
    resume_and_exit(job_id, state_dir, options, quiet=quiet)


def resume_and_exit(
    job_id: str, state_dir: str | None, options: ResumeOptions, *, quiet: bool
) -> None:
    """Resume a job with a progress display, print the summary, exit with its code."""
    from mapwise.render import ProgressDisplay

    echo_err(f"job {job_id}")
    display = ProgressDisplay(sys.stderr, live=sys.stderr.isatty(), quiet=quiet)
    options = replace(options, observers=[display])
    started = time.monotonic()
    try:
        result = api.resume_job(
            job_id, options, state_dir, on_restored=lambda r: echo_err(r.describe())
        )
    finally:
        display.close()
    if result.reason == "nothing to resume":
        echo_err(f"job {job_id} is completed and its DLQ is empty: nothing to resume")
        sys.exit(0)
    report_end(result, state_dir, time.monotonic() - started)
    sys.exit(result.exit_code)


@click.command("validate")
@click.argument("workflow", type=click.Path(dir_okay=False))
def validate_command(workflow: str) -> None:
    """Check WORKFLOW without running it; show how many items it would run."""
    from mapwise.engine.context import base_environment
    from mapwise.engine.freeze import resolve_items

    loaded = api.load(workflow)
    for warning in loaded.warnings:
        echo_err(f"warning: {warning}")
    wf = loaded.workflow
    click.echo(f"workflow {wf.name}: valid ({loaded.path})")
    click.echo(
        f"  setup: {len(wf.setup.commands)} step(s), agent template: "
        f"{len(wf.map.agent_template)} step(s), reduce: {len(wf.reduce)} step(s)"
    )
    input_file = loaded.base_dir / wf.map.input
    if wf.setup.commands and not input_file.is_file():
        click.echo(f"  items: read after setup runs (input {wf.map.input!r} is not a file yet)")
        return
    items, _ = resolve_items(
        wf,
        job_id="validate",
        base_dir=loaded.base_dir,
        base_env=base_environment(wf, "validate"),
        captures={},
    )
    click.echo(f"  items: {len(items)}")
    for item in items[:PREVIEW_ITEMS]:
        click.echo(f"    [{item.index}] {item.item_id}: {_preview(item.value)}")
    if len(items) > PREVIEW_ITEMS:
        click.echo(f"    ... and {len(items) - PREVIEW_ITEMS} more")


def _preview(value: object, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
