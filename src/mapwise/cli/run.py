"""``mapwise run``, ``mapwise resume`` and ``mapwise validate``.

Each command parses its options, calls ``mapwise.api`` and renders what comes back; it
returns its exit code (``cli.exit_codes`` for a run's outcome) and ``main`` exits with it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from mapwise import api
from mapwise.cli.common import (
    echo,
    echo_err,
    executor_option,
    scheduler_option,
    state_dir_option,
)
from mapwise.cli.exit_codes import exit_code_for
from mapwise.domain.states import JobStatus
from mapwise.errors import UserError
from mapwise.limits import MAX_PARALLEL_LIMIT
from mapwise.reports import JobOutcome, human_seconds, resume_command

if TYPE_CHECKING:
    from mapwise.types import JobResult, ResumeOptions, ValidationReport


def summary_line(result: JobResult) -> str:
    counts = f"{result.succeeded} succeeded, {result.dlq} in the DLQ, {result.pending} pending"
    text = f"job {result.job_id} {result.status.value}: {counts} (of {result.total_items})"
    if result.reason:
        text += f"\n  reason: {result.reason}"
    return text


def report_end(
    result: JobResult, state_dir: str | None, wall: float, *, quiet: bool = False
) -> None:
    echo_err(summary_line(result) + f" in {human_seconds(wall)}")
    if result.cost.any:
        echo_err(f"  agents: {result.cost.describe()}")
    if result.outcome is JobOutcome.BUDGET_SPENT:
        more = f"{resume_command(result.job_id, state_dir)} --max-cost USD"
        echo_err(f"  resume with a higher budget: {more}")
    elif result.status is not JobStatus.COMPLETED:
        echo_err(f"  resume with: {resume_command(result.job_id, state_dir)}")
    elif result.dlq:  # a plain resume leaves DLQ items where they are
        retry = resume_command(result.job_id, state_dir).replace(" resume ", " dlq retry ", 1)
        echo_err(f"  retry the failed items: {retry}")
    if result.dlq:
        listing = resume_command(result.job_id, state_dir).replace(" resume ", " dlq list ", 1)
        echo_err(f"  failed items: {listing}")
    if not quiet:
        report = resume_command(result.job_id, state_dir).replace(" resume ", " report ", 1)
        echo_err(f"  see it: {report}  (writes {result.job_id}.html, opens offline)")
    if result.result_branch and result.status is JobStatus.COMPLETED:
        echo_err(f"  the job's work is on {result.result_branch}: git merge {result.result_branch}")


class JobAnnouncer:
    """An observer that prints ``job <id>`` and the workflow's warnings once the job exists.

    The engine publishes ``JobCreated`` after every check that can refuse a new job, so
    the id line is the first line of standard error exactly when there is a job to name,
    and a refused start prints only its error.
    """

    def __init__(self, warnings: Sequence[str]) -> None:
        self.warnings = tuple(warnings)
        self._created = api.JobCreated  # once: it sees every event of the run

    def __call__(self, event: api.Event) -> None:
        if isinstance(event, self._created):
            echo_err(f"job {event.job_id}")
            for warning in self.warnings:
                echo_err(f"warning: {warning}")


def _job_id_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a malformed ``--job-id`` as a usage error naming the option (exit 2)."""
    if value is None:
        return None
    try:
        return api.check_job_id(value)
    except UserError as error:
        raise click.BadParameter(str(error)) from None


def _budget(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """``--max-cost``: a positive amount of USD (``inf``: no limit); else exit 2."""
    if value is not None and (value != value or value <= 0):
        raise click.BadParameter(f"must be a positive amount of USD, got {value}")
    return value


max_cost_option = click.option(
    "--max-cost",
    type=float,
    default=None,
    metavar="USD",
    callback=_budget,
    help="The job's budget for its agents: once spent, no new item starts "
    "(overrides error_policy.max_cost_usd).",
)


@click.command("run")
@click.argument("workflow", type=click.Path(dir_okay=False))
@state_dir_option
@click.option(
    "--job-id",
    default=None,
    callback=_job_id_option,
    help="Choose the job's id (default: name-time-random).",
)
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1, max=MAX_PARALLEL_LIMIT),
    default=None,
    help=f"Override map.max_parallel (1 to {MAX_PARALLEL_LIMIT:,}).",
)
@executor_option
@scheduler_option
@max_cost_option
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
def run_command(
    workflow: str,
    state_dir: str | None,
    job_id: str | None,
    max_parallel: int | None,
    executor: str | None,
    scheduler: str | None,
    max_cost: float | None,
    quiet: bool,
) -> int:
    """Start a job for WORKFLOW and run setup, map and reduce."""
    from mapwise.render import ProgressDisplay

    loaded = api.load(workflow)
    display = ProgressDisplay(sys.stderr, live=sys.stderr.isatty(), quiet=quiet)
    started = time.monotonic()
    try:
        result = api.start_loaded(
            loaded,
            state_dir=state_dir,
            job_id=job_id,
            max_parallel=max_parallel,
            executor=executor,
            scheduler=scheduler,
            observers=[JobAnnouncer(loaded.warnings), display],
            max_cost_usd=max_cost,
        )
    finally:
        display.close()
    report_end(result, state_dir, time.monotonic() - started, quiet=quiet)
    return exit_code_for(result.outcome)


@click.command("resume")
@click.argument("job_id")
@state_dir_option
@click.option("--retry-failed", is_flag=True, help="Also send the DLQ's items back to pending.")
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1, max=MAX_PARALLEL_LIMIT),
    default=None,
    help=f"Override the job's parallelism (1 to {MAX_PARALLEL_LIMIT:,}).",
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
@max_cost_option
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
    max_cost: float | None,
    quiet: bool,
) -> int:
    """Continue JOB_ID where it stopped; succeeded items never run again."""
    from mapwise.types import ResumeOptions

    options = ResumeOptions(
        retry_failed=retry_failed,
        max_parallel=max_parallel,
        reload_workflow=reload_workflow,
        keep_workflow=keep_workflow,
        from_checkpoint=from_checkpoint,
        executor=executor,
        scheduler=scheduler,
        max_cost_usd=max_cost,
    )
    return resume_with_display(job_id, state_dir, options, quiet=quiet)


def resume_with_display(
    job_id: str, state_dir: str | None, options: ResumeOptions, *, quiet: bool
) -> int:
    """Resume a job with a progress display, print the summary; return the exit code.

    The id is known before anything runs, so ``job <id>`` is printed first, as for ``run``.
    """
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
    if result.outcome is JobOutcome.NOTHING_TO_RESUME:
        echo_err(f"job {job_id} is completed and its DLQ is empty: nothing to resume")
    else:
        report_end(result, state_dir, time.monotonic() - started, quiet=quiet)
    return exit_code_for(result.outcome)


@click.command("validate")
@click.argument("workflow", type=click.Path(dir_okay=False))
@state_dir_option
def validate_command(workflow: str, state_dir: str | None) -> None:
    """Check WORKFLOW without running it; show how many items it would run."""
    report = api.validate_workflow(workflow, state_dir=state_dir)
    for warning in report.warnings:
        echo_err(f"warning: {warning}")
    echo(render_validation(report))


def render_validation(report: ValidationReport) -> str:
    """The workflow's shape, its item count and its first items, as ``validate`` prints."""
    lines = [
        f"workflow {report.name}: valid ({report.path})",
        f"  setup: {report.setup_steps} step(s), agent template: "
        f"{report.map_steps} step(s), reduce: {report.reduce_steps} step(s)",
    ]
    if report.workspace is not None:
        space = report.workspace
        repo = space.repo or "the workflow's repository"
        lines.append(
            f"  workspace: worktree of {repo}, base {space.base or 'HEAD'}, "
            f"on_conflict {space.on_conflict.value}"
        )
    if report.item_count is None:
        lines.append(f"  items: {_after_setup(report)}")
        return "\n".join(lines)
    lines.append(f"  items: {report.item_count}")
    for item in report.preview:
        lines.append(f"    [{item.index}] {item.item_id}: {_preview(item.value)}")
    if report.item_count > len(report.preview):
        lines.append(f"    ... and {report.item_count - len(report.preview)} more")
    return "\n".join(lines)


def _after_setup(report: ValidationReport) -> str:
    """Why the items are not counted yet: the input command or file comes after setup."""
    if report.input_is_command:
        return f"the input command {report.input!r} runs after setup; its output gives the items"
    return f"read after setup runs (input {report.input!r} is not a file yet)"


def _preview(value: object, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
