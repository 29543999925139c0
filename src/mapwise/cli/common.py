"""Options and output helpers every command shares."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(),  # checked by store.paths.check_state_dir, as $MAPWISE_STATE_DIR is
    default=None,
    help="Where jobs live (default: $MAPWISE_STATE_DIR, else ./.mapwise).",
)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (a stable shape, for scripts)."
)


# C0 controls but tab and newline, DEL, and C1 (CSI, OSC, ... as one code point)
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROLS_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text: str, *, multiline: bool = True) -> str:
    """``text`` safe for a terminal: each control character shown as ``\\xNN``.

    Item data, error messages and command output reach the text output; an ESC there
    would start a sequence (a title change, an OSC 8 link, a cursor move) that rewrites
    the user's terminal. Tab and newline are kept in a multi-line text; ``multiline=False``
    escapes them too (a table cell). Idempotent: what it writes has no control character.
    """
    pattern = _CONTROLS if multiline else _CONTROLS_ONE_LINE
    return pattern.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def echo(text: str) -> None:
    """Print ``text`` on stdout, its control characters escaped (see ``printable``)."""
    click.echo(printable(text))


def echo_err(text: str) -> None:
    click.echo(printable(text), err=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain aligned text table (no colour: it must read well in logs and pipes)."""
    rows = [[printable(cell, multiline=False) for cell in row] for row in rows]
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
