"""The ``mapwise`` console script: starts a resume's database check, then the CLI.

Why a module of its own: importing the CLI (click, pydantic and the workflow model, the
engine) takes about 0.2 s, and a resume's first act is a check of the job's database
that takes as long again on a big job, in C, without the interpreter lock
(``store/precheck.py``). Started from here, before those imports, the two overlap on
two cores. Only the standard library, ``precheck`` and the state's path rules
(``store/paths.py``, which the CLI imports anyway) are imported before the check
starts. The arguments are read loosely: a wrong guess only checks a file nobody asks
about, since the check proper takes a result only for the very files it is about to
check.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mapwise.errors import UserError
from mapwise.store.paths import DEFAULT_STATE_DIR, job_paths

# resume's options that take a value (a value is not the job id)
_VALUED = {
    "--state-dir",
    "--max-parallel",
    "--from-checkpoint",
    "--executor",
    "--scheduler",
    "--max-cost",
}


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
    if job_id is None:
        return None
    root = state_dir or os.environ.get("MAPWISE_STATE_DIR") or DEFAULT_STATE_DIR
    try:
        return job_paths(Path(root).expanduser().absolute(), job_id).database
    except UserError:  # not a job id: the CLI will say so
        return None


def main() -> None:
    database = _resumed_database(sys.argv[1:])
    if database is not None:
        from mapwise.store import precheck

        precheck.start(database)
    from mapwise.cli.main import main as cli_main

    cli_main()
