"""Commands that read jobs: ``status``, ``jobs``, ``dlq list/show``, ``logs``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mapwise import api
from mapwise.cli.common import echo, json_option, print_json, state_dir_option, table
from mapwise.domain.usage import Cost
from mapwise.errors import UserError
from mapwise.reports import JobListing, JobStatusReport, human_seconds, iso
from mapwise.store.ledger import AgentRunRecord

LOG_TAIL_LINES = 40


def _when(timestamp: float | None) -> str:
    text = iso(timestamp)
    return text.replace("T", " ")[:19] if text else "-"


def _job_row(job: JobListing) -> list[str]:
    p = job.progress
    eta = job.estimated_remaining_seconds
    return [
        job.job_id,
        job.workflow_name,
        job.status,
        f"{p.completed_items}/{p.total_items}",
        str(p.failed_items),
        str(p.pending_items),
        _when(job.updated_at),
        human_seconds(eta) if eta is not None else "-",
    ]


@click.command("jobs")
@click.option("--all", "include_all", is_flag=True, help="Also list completed and running jobs.")
@state_dir_option
@json_option
def jobs_command(include_all: bool, state_dir: str | None, as_json: bool) -> None:
    """List resumable jobs (interrupted, failed, or completed with a DLQ)."""
    jobs = api.list_jobs(state_dir, include_all=include_all)
    if as_json:
        print_json([job.to_json() for job in jobs])
        return
    if not jobs:
        click.echo("no jobs" if include_all else "no resumable jobs (--all lists every job)")
        return
    headers = ["JOB", "WORKFLOW", "STATUS", "DONE", "DLQ", "PENDING", "UPDATED", "ETA"]
    rows = [_job_row(job) for job in jobs]
    if any(job.cost.any for job in jobs):  # jobs of agents: what each spent so far
        headers.append("COST")
        rows = [[*row, _usd(job.cost)] for row, job in zip(rows, jobs, strict=True)]
    click.echo(table(rows, headers))


def _usd(cost: Cost | None) -> str:
    return f"${cost.usd:.2f}" if cost is not None and cost.any else "-"


def _render_status(report: JobStatusReport) -> str:
    job, p, d = report.job, report.job.progress, report.durations
    s = d.item_seconds
    lines = [
        f"job        {job.job_id}",
        f"workflow   {job.workflow_name}",
        f"status     {job.status}{' (resumable)' if job.resumable else ''}",
        f"phase      {report.phase}",
        f"items      {p.completed_items} succeeded, {p.failed_items} in the DLQ, "
        f"{p.pending_items} pending, "
        + (f"{p.purged_items} purged, " if p.purged_items else "")
        + f"{p.total_items} total ({p.completion_percentage}%)",
        f"started    {_when(job.started_at)}    updated {_when(job.updated_at)}",
        f"time       wall {human_seconds(d.wall_seconds)}, compute "
        f"{human_seconds(d.compute_seconds)} over {len(report.runs)} run(s)",
    ]
    if s.mean is not None:
        lines.append(
            f"item time  mean {human_seconds(s.mean)}, p50 {human_seconds(s.p50)}, "
            f"p95 {human_seconds(s.p95)}, max {human_seconds(s.max)}"
        )
    if job.cost.any:
        lines.append(f"cost       {job.cost.describe()}")
    if report.reason:
        lines.append(f"reason     {report.reason}")
    if report.workspace is not None:
        ws = report.workspace
        lines.append(f"workspace  branch {ws.job_branch} of {ws.repo}")
        lines.append(f"           worktree {ws.job_worktree}")
    for number, run in enumerate(report.runs, start=1):
        lines.append(
            f"run {number:<6} {_when(run.started_at)} -> {_when(run.ended_at)}  {run.outcome}"
        )
    if report.items is not None:
        rows = [
            [i.item_id, i.status, str(i.attempts), f"{i.duration_seconds:.3f}"]
            for i in report.items
        ]
        headers = ["ITEM", "STATUS", "ATTEMPTS", "SECONDS"]
        if report.workspace is not None:
            rows = [
                [*row, i.branch or "-", i.merge or "-"]
                for row, i in zip(rows, report.items, strict=True)
            ]
            headers += ["BRANCH", "MERGE"]
        if job.cost.any:
            rows = [[*row, _usd(i.cost)] for row, i in zip(rows, report.items, strict=True)]
            headers.append("COST")
        lines += ["", table(rows, headers)]
    return "\n".join(lines)


@click.command("status")
@click.argument("job_id")
@state_dir_option
@json_option
@click.option("--items", "with_items", is_flag=True, help="Include every item's status.")
def status_command(job_id: str, state_dir: str | None, as_json: bool, with_items: bool) -> None:
    """Show a job's progress, phase, runs and durations."""
    report = api.job_status(job_id, state_dir, with_items=with_items)
    if as_json:
        print_json(report.to_json())
    else:
        echo(_render_status(report))


@click.group("dlq")
def dlq_group() -> None:
    """Inspect the dead letter queue: items whose attempts are spent."""


@dlq_group.command("list")
@click.argument("job_id")
@state_dir_option
@json_option
def dlq_list_command(job_id: str, state_dir: str | None, as_json: bool) -> None:
    """List the items in JOB_ID's dead letter queue."""
    entries = api.dlq_list(job_id, state_dir)
    if as_json:
        print_json([entry.to_json() for entry in entries])
        return
    if not entries:
        click.echo(f"the DLQ of {job_id} is empty")
        return
    rows = [
        [
            e.item_id,
            str(e.attempts),
            e.error_kind or "-",
            _when(e.failed_at),
            (e.last_error or "")[:80],
        ]
        for e in entries
    ]
    click.echo(table(rows, ["ITEM", "ATTEMPTS", "ERROR", "FAILED AT", "LAST ERROR"]))


def _tail(path: str | None, lines: int) -> list[str]:
    if not path or not Path(path).is_file():
        return []
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]


@dlq_group.command("show")
@click.argument("job_id")
@click.argument("item_id")
@state_dir_option
def dlq_show_command(job_id: str, item_id: str, state_dir: str | None) -> None:
    """Show ITEM_ID's attempt history and the tail of its last log."""
    detail = api.item_detail(job_id, item_id, state_dir)
    item = detail.item
    echo(
        f"item {item.item_id} (index {item.index}): {item.status.value}, "
        f"{item.attempts} counted attempt(s)"
    )
    echo(f"  value: {json.dumps(item.value, ensure_ascii=False)}")
    if item.last_error:
        echo(f"  last error: {item.last_error}")
    if item.branch:
        echo(f"  branch: {item.branch}")
        echo(f"  worktree: {item.worktree or '(none: its work is on its branch)'}")
    if item.conflict_files:
        echo(f"  conflicting files: {', '.join(item.conflict_files)}")
    if detail.agent_runs:
        spent = sum(run.cost_usd or 0.0 for run in detail.agent_runs)
        echo(f"  cost: ${spent:.4f} over {len(detail.agent_runs)} agent run(s)")
    runs_by_attempt: dict[int | None, list[AgentRunRecord]] = {}
    for agent_run in detail.agent_runs:
        runs_by_attempt.setdefault(agent_run.attempt_id, []).append(agent_run)
    for attempt in detail.attempts:
        duration = f"{attempt.duration:.3f}s" if attempt.duration is not None else "-"
        echo(
            f"attempt {attempt.attempt_no} (run {attempt.run_no}, slot {attempt.slot}, "
            f"{attempt.host or '?'}): {attempt.outcome} {attempt.error_kind or ''} "
            f"exit={attempt.exit_code} signal={attempt.signal} {duration} "
            f"started {_when(attempt.started_at)}"
        )
        if attempt.resume_from:
            echo(
                f"    continued the attempt before at step {attempt.resume_from + 1} "
                f"({_steps_before(attempt.resume_from)} succeeded before)"
            )
        for step in detail.steps.get(attempt.id, ()):
            handler = " (on_failure)" if step["on_failure"] else ""
            echo(
                f"    step {step['step_index'] + 1}{handler}: "
                f"{step['label']} -> exit={step['exit_code']} signal={step['signal']} "
                f"timed_out={bool(step['timed_out'])} {step['duration']:.3f}s"
            )
        agent_runs = runs_by_attempt.get(attempt.id, ())
        if agent_runs:
            spent = sum(run.cost_usd or 0.0 for run in agent_runs)
            echo(f"    agents: ${spent:.4f} in {len(agent_runs)} run(s)")
        for agent_run in agent_runs:
            echo(f"    {_agent_line(agent_run)}")
        if attempt.stderr_tail:
            for line in attempt.stderr_tail.splitlines()[-10:]:
                echo(f"    | {line}")
    last = detail.attempts[-1] if detail.attempts else None
    if last is not None and last.log_path:
        echo(f"log: {last.log_path}")
        for line in _tail(last.log_path, LOG_TAIL_LINES):
            echo(f"  {line}")


def _steps_before(count: int) -> str:
    return "step 1" if count == 1 else f"steps 1-{count}"


def _agent_line(run: AgentRunRecord) -> str:
    """``step 1 claude session 5f0c… (resumed): success, $0.0123, 3 turns, 1200 in/300 out``."""
    cost = f"${run.cost_usd:.4f}" if run.cost_usd is not None else "no cost reported"
    how = " (resumed)" if run.continued else ""
    said = run.subtype or ("no result read" if not run.result_read else "?")
    if run.is_error and said == "success":
        said = "error (is_error)"
    return (
        f"step {run.step_index + 1} {run.agent} session {run.session_id or '?'}{how}: {said}, "
        f"{cost}, {run.turns} turns, {run.input_tokens} in/{run.output_tokens} out"
        + (f", {run.model}" if run.model else "")
    )


@click.command("logs")
@click.argument("job_id")
@click.argument("item_id")
@click.option("--attempt", type=int, default=None, help="Which attempt (default: the last).")
@state_dir_option
def logs_command(job_id: str, item_id: str, attempt: int | None, state_dir: str | None) -> None:
    """Print the full log of one attempt of ITEM_ID.

    Raw, as the command wrote it (control characters included, as ``cat`` would): the
    log is what the user asked to see; ``dlq show`` escapes its tail.
    """
    detail = api.item_detail(job_id, item_id, state_dir)
    if not detail.attempts:
        raise UserError(f"item {item_id!r} of job {job_id} has not run yet")
    chosen = detail.attempts[-1]
    if attempt is not None:
        matches = [a for a in detail.attempts if a.attempt_no == attempt]
        if not matches:
            raise UserError(f"item {item_id!r} has no attempt {attempt}")
        chosen = matches[0]
    if not chosen.log_path or not Path(chosen.log_path).is_file():
        click.echo(f"attempt {chosen.attempt_no} of {item_id} printed nothing", err=True)
        return
    click.echo(Path(chosen.log_path).read_bytes().decode("utf-8", errors="replace"), nl=False)
