"""Options and output helpers every command shares."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where jobs live (default: $MAPWISE_STATE_DIR, else ./.mapwise).",
)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (a stable shape, for scripts)."
)


def echo_err(text: str) -> None:
    click.echo(text, err=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain aligned text table (no colour: it must read well in logs and pipes)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


executor_option = click.option(
    "--executor",
    type=click.Choice(["local", "dask"]),
    default=None,
    help="Where the map phase runs (default: the workflow's executor, else local).",
)
scheduler_option = click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="The Dask scheduler, e.g. tcp://HOST:8786 (with --executor dask).",
)
