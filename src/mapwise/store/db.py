"""SQLite connections with the discipline the state needs: WAL, FULL sync, one writer.

Every transition is one transaction (``transaction``), so a ``kill -9`` or a power cut at
any instant leaves a consistent database.

This is also the store's edge for errors: ``connect``, ``transaction`` and ``reading``
turn what SQLite reports into the ``MapwiseError`` it means (``sqlerrors.classify``), so
no ``sqlite3`` error reaches the engine, the API or the CLI, and a locked or read-only
database is not called damaged.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mapwise.errors import StateDamagedError
from mapwise.store import schema
from mapwise.store.sqlerrors import translated

BUSY_TIMEOUT_MS = 10_000


def _private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if missing, so SQLite never makes it 0644."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def on_read_only_file_system(path: Path) -> bool:
    """Whether ``path``'s folder is on a file system mounted read-only."""
    with contextlib.suppress(OSError):
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    return False


def _read_only_uri(path: Path) -> str:
    """The URI a reading connection opens ``path`` with.

    A WAL database on a read-only file system cannot be opened ``mode=ro`` when its
    ``-shm`` file is absent (SQLite must create it even to read), so there it is opened
    ``immutable=1``: no locks, no ``-shm``. That is only right when nothing is waiting in
    the WAL (absent or empty, as a job that ended cleanly leaves it) and nothing can
    write the file (the file system is read-only); otherwise ``mode=ro`` as usual.
    """
    wal = path.with_name(path.name + "-wal")
    with contextlib.suppress(OSError):
        if on_read_only_file_system(path) and (not wal.exists() or wal.stat().st_size == 0):
            return f"file:{path}?mode=ro&immutable=1"
    return f"file:{path}?mode=ro"


def connect(path: Path, *, create: bool = False, readonly: bool = False) -> sqlite3.Connection:
    """Open a job database; ``create`` makes a new one with the current schema.

    Any failure is the ``MapwiseError`` it means: a database locked past the busy timeout
    is ``StateBusyError``, an unwritable one ``StateReadOnlyError``, a damaged one
    ``StateDamagedError`` (see ``sqlerrors``).
    """
    if create:
        _private_file(path)
    elif not path.exists():
        raise StateDamagedError(f"the job database {path} is missing")
    with translated(path):
        if readonly:
            conn = sqlite3.connect(
                _read_only_uri(path), uri=True, isolation_level=None, check_same_thread=False
            )
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            if create:
                schema.create_schema(conn)
            else:
                schema.migrate(conn, readonly=readonly)
        except BaseException:
            conn.close()
            raise
    return conn


def _rollback(conn: sqlite3.Connection) -> None:
    """End the open transaction, if any; a failure here must not hide the first one."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error, errors classified.

    A failed ``COMMIT`` (a full disk) leaves SQLite's transaction open, so it is rolled
    back too: the connection stays usable, for instance to record that the run failed.
    """
    with translated(conn):
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise


@contextmanager
def reading(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Reads outside a transaction, with their errors classified as ``transaction`` does.

    ``with db.reading(store.conn): rows = store.conn.execute(...).fetchall()``; iterate
    the rows inside the block, where a failing fetch is still classified.
    """
    with translated(conn):
        yield conn
