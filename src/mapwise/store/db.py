"""SQLite connections with the discipline the state needs: WAL, FULL sync, one writer.

Every transition is one transaction (``transaction``), so a ``kill -9`` or a power cut at
any instant leaves a consistent database.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mapwise.errors import StateDamagedError, StorageFullError
from mapwise.store import schema

BUSY_TIMEOUT_MS = 10_000


def _private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if missing, so SQLite never makes it 0644."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def connect(path: Path, *, create: bool = False, readonly: bool = False) -> sqlite3.Connection:
    """Open a job database; ``create`` makes a new one with the current schema."""
    if create:
        _private_file(path)
    elif not path.exists():
        raise StateDamagedError(f"the job database {path} is missing")
    try:
        if readonly:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        if create:
            schema.create_schema(conn)
        else:
            schema.migrate(conn)
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        raise StateDamagedError(f"the job database {path} cannot be opened: {exc}") from exc
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if "full" in str(exc).lower():
            raise StorageFullError(
                f"no room to write the job's state ({exc}); free some space, then resume the job"
            ) from exc
        raise
