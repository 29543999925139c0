"""Where state lives: the state directory, each job's folder, and new job ids.

Folders are created 0700 and files 0600: a job's state and logs hold item data and
command output, which are the user's alone.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from mapwise.errors import StateReadOnlyError, UnknownJobError, UserError

DEFAULT_STATE_DIR = ".mapwise"
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def resolve_state_dir(state_dir: str | Path | None) -> Path:
    """``--state-dir``, else ``MAPWISE_STATE_DIR``, else ``./.mapwise`` (of the working
    directory), as an absolute path."""
    if state_dir is not None:
        chosen, source = Path(state_dir).expanduser().absolute(), "--state-dir"
    elif env := os.environ.get("MAPWISE_STATE_DIR"):
        chosen, source = Path(env).expanduser().absolute(), "MAPWISE_STATE_DIR"
    else:
        chosen, source = Path(DEFAULT_STATE_DIR).absolute(), "the default"
    return check_state_dir(chosen, source)


def _unusable(path: Path) -> str | None:
    """Why ``path`` (which must be a folder or not exist yet) cannot be one, if it cannot:
    a file, a dangling symlink, a symlink loop, a name the system refuses."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"a symlink to nothing ({os.readlink(path)} does not exist)"
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop"
        return f"unusable ({exc.strerror or exc})"
    return None if stat.S_ISDIR(mode) else "a file"


def check_state_dir(state_dir: Path, source: str | None = None) -> Path:
    """``state_dir`` if a job's folder can be made in it; else a ``UserError`` (exit 2)
    naming why: it, or the first part of its path that exists, is a file, a dangling
    symlink or a symlink loop. Every command resolves its state directory through here,
    so ``--state-dir`` and ``MAPWISE_STATE_DIR`` are refused alike, before anything is
    read or made. Permissions are left to the moment of writing, which reports them.
    """
    existing = state_dir
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    why = _unusable(existing)
    if why is not None:
        where = "" if existing == state_dir else f": {existing} is {why}"
        what = f"is {why}" if existing == state_dir else "cannot be made"
        named = f" ({source})" if source else ""
        raise UserError(f"the state directory {state_dir}{named} {what}{where}")
    return state_dir


UNWRITABLE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def unwritable(exc: OSError, target: Path) -> StateReadOnlyError | None:
    """The ``StateReadOnlyError`` (exit 1) that ``exc``, raised writing ``target`` in the
    state directory, means; None if it is not about a read-only or forbidden place."""
    if exc.errno not in UNWRITABLE_ERRNOS:
        return None
    why = "the file system is read-only" if exc.errno == errno.EROFS else "permission denied"
    return StateReadOnlyError(
        f"cannot write {target}: {why}. This is not damage: commands that only read "
        "(status, jobs, dlq list, logs, verify) still work; to run, resume, repair or "
        "purge, make the state directory writable (or copy it elsewhere), then try again"
    )


def new_job_id(workflow_name: str, now: float | None = None) -> str:
    """A readable id that two runs in the same second never share: name, UTC time, random."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", workflow_name)[:60] or "job"
    return f"{safe}-{stamp}-{secrets.token_hex(3)}"


def check_job_id(job_id: str) -> str:
    """Reject ids that could escape the jobs folder or confuse a shell."""
    if not JOB_ID_PATTERN.match(job_id) or job_id in {".", ".."}:
        raise UserError(
            f"invalid job id {job_id!r}: use letters, digits, '.', '_' and '-' (at most 128)"
        )
    return job_id


@dataclass(frozen=True)
class JobPaths:
    """The files of one job under ``<state_dir>/jobs/<job_id>/``."""

    root: Path

    @property
    def job_id(self) -> str:
        return self.root.name

    @property
    def database(self) -> Path:
        return self.root / "state.db"

    @property
    def running_marker(self) -> Path:
        """Present while a coordinator runs the job; gone after any exit but a crash."""
        return self.root / "running"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def work(self) -> Path:
        """Scratch files handed to commands: item JSON files, the map results file."""
        return self.root / "work"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def slots(self) -> Path:
        """One small file per busy pool slot naming the process group it runs."""
        return self.root / "slots"


def jobs_root(state_dir: Path) -> Path:
    return state_dir / "jobs"


def job_paths(state_dir: Path, job_id: str) -> JobPaths:
    return JobPaths(jobs_root(state_dir) / check_job_id(job_id))


def existing_job_paths(state_dir: Path, job_id: str) -> JobPaths:
    """The paths of a job that must exist; ``UnknownJobError`` (exit 2) otherwise."""
    paths = job_paths(state_dir, job_id)
    if not paths.database.exists() and not paths.checkpoints.is_dir():
        raise UnknownJobError(f"no job {job_id!r} in {state_dir}")
    return paths  # a job whose database is gone is damaged (exit 4), not unknown


def list_job_ids(state_dir: Path) -> list[str]:
    """Ids of the jobs under ``state_dir``, oldest folder first."""
    root = jobs_root(state_dir)
    if not root.is_dir():
        return []
    entries = [
        p for p in root.iterdir() if (p / "state.db").exists() or (p / "checkpoints").is_dir()
    ]
    entries.sort(key=lambda p: (p.stat().st_mtime, p.name))
    return [p.name for p in entries]
