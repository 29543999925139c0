"""``mapwise report``: a job's report as one HTML file, and its trace for Perfetto."""

from __future__ import annotations

import click

from mapwise import api
from mapwise.cli.common import state_dir_option


@click.command("report")
@click.argument("job_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the report (default: JOB_ID.html here).",
)
@click.option(
    "--trace",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the attempts as Chrome trace-event JSON (Perfetto, chrome://tracing).",
)
@state_dir_option
def report_command(
    job_id: str, output: str | None, trace: str | None, state_dir: str | None
) -> None:
    """Write JOB_ID's report: one self-contained HTML file that opens offline."""
    written = api.write_report(job_id, output, state_dir=state_dir, trace=trace)
    size = f"{written.bytes / 1024:,.0f} KiB"
    click.echo(
        f"wrote {written.path} ({size}; {written.attempts:,} attempts in "
        f"{written.bars:,} timeline bars, {written.items:,} items)",
        err=True,
    )
    if written.trace_path is not None:
        click.echo(
            f"wrote {written.trace_path} ({written.trace_events:,} trace events; open it in "
            "https://ui.perfetto.dev or chrome://tracing)",
            err=True,
        )
    click.echo(f"open it: file://{written.path.resolve()}", err=True)
