"""The ``mapwise`` command group, and the one place errors become exit codes."""

from __future__ import annotations

import sys

import click

from mapwise import __version__
from mapwise.cli import inspect, report, run, state
from mapwise.cli.common import printable
from mapwise.cli.logs import configure_logging
from mapwise.errors import MapwiseError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mapwise")
def cli() -> None:
    """Run map-reduce workflows of commands over JSON work items, and resume them."""


cli.add_command(run.run_command)
cli.add_command(run.resume_command_cli)
cli.add_command(run.validate_command)
cli.add_command(inspect.status_command)
cli.add_command(inspect.jobs_command)
cli.add_command(inspect.dlq_group)
cli.add_command(inspect.logs_command)
cli.add_command(report.report_command)
cli.add_command(state.checkpoints_command)
cli.add_command(state.verify_command)
cli.add_command(state.repair_command)
cli.add_command(state.export_command)
cli.add_command(state.import_command)
cli.add_command(state.clean_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point, and the one place the process exits.

    A command returns its exit code (a run's comes from ``cli.exit_codes``; None is 0);
    an error raised out of it is mapped to its code here.
    """
    configure_logging()
    try:
        code = cli.main(args=argv, prog_name="mapwise", standalone_mode=False)
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    except click.exceptions.Abort:
        click.echo("mapwise: aborted", err=True)
        code = 130
    except MapwiseError as error:
        click.echo(printable(f"mapwise: error: {error}"), err=True)
        code = error.exit_code
    except KeyboardInterrupt:
        click.echo("mapwise: interrupted", err=True)
        code = 130
    except BrokenPipeError:
        code = 1
    sys.exit(code if isinstance(code, int) else 0)  # a command that returns nothing: 0
