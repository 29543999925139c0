"""The ``mapwise`` console script: starts a resume's database check, then the CLI.

Why a module of its own: importing the CLI (click, pydantic and the workflow model, the
engine) takes about 0.2 s, and a resume's first act is a check of the job's database
that takes as long again on a big job, in C, without the interpreter lock
(``store/precheck.py``). Started from here, before those imports, the two overlap on
two cores. Only the standard library and ``precheck`` are imported before the check
starts. The arguments are read loosely: a wrong guess only checks a file nobody asks
about, since the check proper takes a result only for the very files it is about to
check.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# resume's options that take a value (a value is not the job id)
_VALUED = {
    "--state-dir",
    "--max-parallel",
    "--from-checkpoint",
    "--executor",
    "--scheduler",
    "--max-cost",
}
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _resumed_database(argv: list[str]) -> Path | None:
    """The database ``mapwise resume JOB [--state-dir DIR]`` will open, as best guessed."""
    if not argv or argv[0] != "resume":
        return None
    job_id, state_dir = None, None
    words = iter(argv[1:])
    for word in words:
        name, equals, value = word.partition("=")
        if name == "--state-dir":
            state_dir = value if equals else next(words, None)
        elif name in _VALUED and not equals:
            next(words, None)
        elif not word.startswith("-") and job_id is None:
            job_id = word
    if job_id is None or not _JOB_ID.match(job_id):
        return None
    root = state_dir or os.environ.get("MAPWISE_STATE_DIR") or ".mapwise"
    return Path(root).expanduser().absolute() / "jobs" / job_id / "state.db"


def main() -> None:
    database = _resumed_database(sys.argv[1:])
    if database is not None:
        from mapwise.store import precheck

        precheck.start(database)
    from mapwise.cli.main import main as cli_main

    cli_main()
