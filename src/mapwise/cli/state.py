"""Commands on a job's state: checkpoints, verify, repair, export, import, DLQ changes.

A command that ends with a code other than 0 returns it; ``main`` exits with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mapwise import api
from mapwise.cli.common import echo, echo_err, json_option, print_json, state_dir_option, table
from mapwise.cli.inspect import dlq_group
from mapwise.cli.run import resume_with_display
from mapwise.errors import StateDamagedError
from mapwise.reports import iso, resume_command

if TYPE_CHECKING:
    from mapwise.engine.workspaces import CleanReport


@click.command("checkpoints")
@click.argument("job_id")
@state_dir_option
@json_option
def checkpoints_command(job_id: str, state_dir: str | None, as_json: bool) -> None:
    """List JOB_ID's checkpoints (resume from one with --from-checkpoint N)."""
    infos = api.list_checkpoints(job_id, state_dir)
    if as_json:
        print_json([info.to_json() for info in infos])
        return
    if not infos:
        click.echo(f"job {job_id} has no checkpoints yet")
        return
    rows = [
        [
            str(i.sequence),
            (iso(i.created_at) or "-").replace("T", " ")[:19],
            i.phase or "-",
            "-" if i.completed_items is None else str(i.completed_items),
            str(i.bytes),
            "yes" if i.valid else f"NO: {i.problem}",
        ]
        for i in infos
    ]
    click.echo(table(rows, ["CHECKPOINT", "CREATED", "PHASE", "SUCCEEDED", "BYTES", "VALID"]))


@click.command("verify")
@click.argument("job_id")
@state_dir_option
def verify_command(job_id: str, state_dir: str | None) -> int:
    """Check JOB_ID's database, checkpoints and invariants; exit 4 on any damage, 1 on notes."""
    findings = api.verify_job(job_id, state_dir)
    for finding in findings:
        label = "damage" if finding.damage else "note"
        echo(f"{label}: {finding.where}: {finding.message}")
    if any(f.damage for f in findings):
        echo_err(f"job {job_id} is damaged; `mapwise repair {job_id}` rebuilds it")
        return StateDamagedError.exit_code
    if findings:
        return 1  # notes only: nothing damaged, but something to read
    click.echo(f"job {job_id}: state verified, no findings")
    return 0


@click.command("repair")
@click.argument("job_id")
@state_dir_option
def repair_command(job_id: str, state_dir: str | None) -> int:
    """Rebuild a damaged JOB_ID from its newest valid checkpoint; back up what changes."""
    report = api.repair_checkpoint(job_id, state_dir)
    for action in report.actions or ("nothing to repair",):
        click.echo(action)
    if report.backup_dir:
        click.echo(f"the replaced files are kept in {report.backup_dir}")
    if report.remaining:
        for finding in report.remaining:
            echo_err(f"still damaged: {finding.where}: {finding.message}")
        return StateDamagedError.exit_code
    return 0


@click.command("export")
@click.argument("job_id")
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The checkpoint file to write.",
)
@state_dir_option
def export_command(job_id: str, output: str, state_dir: str | None) -> None:
    """Write JOB_ID's whole state as one checkpoint file (to move it elsewhere)."""
    path = api.export_job(job_id, output, state_dir)
    click.echo(f"exported job {job_id} to {path}")


@click.command("import")
@click.argument("checkpoint_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--job-id", default=None, help="Import under another id.")
@click.option(
    "--workflow",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where the workflow file is on this machine.",
)
@state_dir_option
def import_command(
    checkpoint_file: str, job_id: str | None, workflow: str | None, state_dir: str | None
) -> None:
    """Make a job from a checkpoint file written by `mapwise export`."""
    imported = api.import_job(checkpoint_file, state_dir, job_id=job_id, workflow=workflow)
    click.echo(f"imported job {imported}; continue it with: {resume_command(imported, state_dir)}")


@dlq_group.command("retry")
@click.argument("job_id")
@click.argument("item_ids", nargs=-1)
@state_dir_option
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
def dlq_retry_command(
    job_id: str, item_ids: tuple[str, ...], state_dir: str | None, quiet: bool
) -> int:
    """Send DLQ items (all, or ITEM_IDS) back to pending and resume JOB_ID at once."""
    count = api.dlq_retry(job_id, list(item_ids), state_dir)
    echo_err(f"{count} item(s) sent back from the DLQ to pending")
    from mapwise.types import ResumeOptions

    return resume_with_display(job_id, state_dir, ResumeOptions(), quiet=quiet)


@dlq_group.command("purge")
@click.argument("job_id")
@click.argument("item_ids", nargs=-1)
@click.option("--force", is_flag=True, help="Also remove unmerged work of their branches.")
@state_dir_option
def dlq_purge_command(
    job_id: str, item_ids: tuple[str, ...], state_dir: str | None, force: bool
) -> int:
    """Give up on DLQ items (all, or ITEM_IDS): they leave the DLQ and never run again.

    Exits 1 when a purged item's unmerged work was kept (as ``clean`` does).
    """
    count, cleaned = api.purge_dlq_items(job_id, list(item_ids), state_dir, force=force)
    click.echo(f"{count} item(s) purged from the DLQ of {job_id}")
    if cleaned is None:
        return 0
    _echo_clean(cleaned)
    return 1 if cleaned.kept else 0


def _echo_clean(report: CleanReport) -> None:
    if report.removed:
        click.echo(f"removed the worktrees and branches of {len(report.removed)} item(s)")
    for item_id, why in report.kept:
        echo(f"kept {item_id}: {why} (use --force to remove it anyway)")
    if report.pool_removed:
        click.echo(f"removed {report.pool_removed} unused worktree(s) of the job's pool")
    if report.job_worktree_removed:
        click.echo("removed the job's worktree (its branch, the job's result, stays)")


@click.command("clean")
@click.argument("job_id")
@state_dir_option
@click.option("--force", is_flag=True, help="Also remove unmerged commits and uncommitted work.")
def clean_command(job_id: str, state_dir: str | None, force: bool) -> int:
    """Remove the worktrees and branches a worktree job keeps for its DLQ items."""
    report = api.clean_job(job_id, state_dir, force=force)
    _echo_clean(report)
    if not (report.removed or report.kept or report.pool_removed or report.job_worktree_removed):
        click.echo(f"nothing to clean in job {job_id}")
    return 1 if report.kept else 0
