"""Checkpoints: versioned, checksummed, compressed snapshots of a job's whole state.

A checkpoint is a gzip file of JSON lines::

    {"format": "mapwise-checkpoint", "version": 1, "job_id": ..., "sequence": ...,
     "created_at": ..., "phase": ..., "status": ..., "counts": {...}}
    {"t": "job", ...}            the job row (workflow frozen in it)
    {"t": "run", ...}            every run
    {"t": "item", ...}           every item: id, value, status, attempts, durations, result
    {"t": "attempt", ...}        every attempt: slot (the agent), host, times, outcome, error
    {"t": "step", ...}           every step record
    {"t": "phase_step", ...}     setup and reduce progress
    {"t": "end", "records": N, "sha256": "..."}   checksum of every line above

It holds what prodigy's ``MapReduceCheckpoint`` holds (completed and remaining items, the
DLQ with attempt history, per-agent assignments, durations) and is enough to rebuild the
database. Files are written atomically: temporary file, fsync, rename, fsync of the folder.

Version history:

- 1: the format above.
- 2: the same records; item records may carry the worktree columns of schema version 2
  (branch, worktree, start and head commits, merge queue place, conflict files). A
  version 1 file restores as it is (those columns empty); a mapwise that reads only
  version 1 refuses a version 2 file instead of failing on unknown columns.
- 3: schema version 3's records: ``{"t": "agent_run", ...}`` (the ledger of agent step
  executions) and the attempts' and steps' continuation columns. Older files restore
  as they are (no ledger, nothing to continue).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mapwise.errors import StateDamagedError
from mapwise.store import schema

FORMAT = "mapwise-checkpoint"
FORMAT_VERSION = 3
SUFFIX = ".ckpt"
TMP_SUFFIX = ".tmp"
TABLES = (
    ("job", "job", "id"),
    ("run", "runs", "run_no"),
    ("item", "items", "idx"),
    ("attempt", "attempts", "id"),
    ("step", "steps", "id"),
    ("phase_step", "phase_steps", "phase, step_index"),
    ("agent_run", "agent_runs", "id"),
)


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file as ``mapwise checkpoints`` lists it."""

    sequence: int
    path: Path
    created_at: float | None
    phase: str | None
    completed_items: int | None
    bytes: int
    valid: bool
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        from mapwise.reports import iso

        return {
            "checkpoint": self.sequence,
            "created_at": iso(self.created_at),
            "phase": self.phase,
            "completed_items": self.completed_items,
            "bytes": self.bytes,
            "valid": self.valid,
        }


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read and verified: its header and its records by kind."""

    header: dict[str, Any]
    records: dict[str, list[dict[str, Any]]]

    @property
    def job_id(self) -> str:
        return str(self.header["job_id"])

    def completed_items(self) -> int:
        return int(self.header.get("counts", {}).get("succeeded", 0))


def checkpoint_path(folder: Path, sequence: int) -> Path:
    return folder / f"ckpt-{sequence:06d}{SUFFIX}"


def _sequence_of(path: Path) -> int | None:
    stem = path.name.removesuffix(SUFFIX)
    try:
        return int(stem.removeprefix("ckpt-"))
    except ValueError:
        return None


def checkpoint_files(folder: Path) -> list[tuple[int, Path]]:
    """(sequence, path) of the checkpoint files in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob(f"ckpt-*{SUFFIX}"):
        sequence = _sequence_of(path)
        if sequence is not None:
            found.append((sequence, path))
    return sorted(found)


def _lines(conn: sqlite3.Connection, job_id: str, sequence: int) -> Iterator[bytes]:
    """The checkpoint's JSON lines, read inside the caller's read transaction."""
    job = conn.execute("SELECT phase, status FROM job WHERE id = 1").fetchone()
    counts = dict(conn.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall())
    max_attempt = conn.execute("SELECT COALESCE(MAX(id), 0) FROM attempts").fetchone()[0]
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "schema_version": schema.SCHEMA_VERSION,
        "job_id": job_id,
        "sequence": sequence,
        "created_at": time.time(),
        "phase": job[0],
        "status": job[1],
        "counts": counts,
        "max_attempt_id": max_attempt,
    }
    yield json.dumps(header).encode() + b"\n"
    for kind, table, order in TABLES:
        # SQLite writes each row's JSON itself: ten times faster than dicts in Python
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        pairs = ", ".join(f"'{name}', {name}" for name in columns)
        cursor = conn.execute(
            f"SELECT json_object('t', '{kind}', {pairs}) FROM {table} ORDER BY {order}"
        )
        while rows := cursor.fetchmany(5000):
            yield "".join(f"{row[0]}\n" for row in rows).encode()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointCancelled(Exception):
    """A checkpoint write given up before it finished (a stop that cannot wait for it)."""


def write_checkpoint(
    conn: sqlite3.Connection,
    folder: Path,
    job_id: str,
    sequence: int,
    *,
    target: Path | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Snapshot the database (one read transaction) into a new checkpoint file, atomically.

    ``cancel``, once set, gives the write up between two chunks: its temporary file is
    removed and ``CheckpointCancelled`` raised, so a stop of a huge job need not wait for
    a snapshot of every row.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = target or checkpoint_path(folder, sequence)
    tmp = final.with_name(final.name + TMP_SUFFIX)
    digest = hashlib.sha256()
    count = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as packed:
                conn.execute("BEGIN")
                try:
                    for chunk in _lines(conn, job_id, sequence):
                        if cancel is not None and cancel.is_set():
                            raise CheckpointCancelled(f"checkpoint {sequence} given up")
                        digest.update(chunk)
                        packed.write(chunk)
                        count += chunk.count(b"\n")
                finally:
                    conn.execute("COMMIT")
                end = {"t": "end", "records": count, "sha256": digest.hexdigest()}
                packed.write(json.dumps(end).encode() + b"\n")
            raw.flush()
            os.fsync(raw.fileno())
    except CheckpointCancelled:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    return final


def temporaries(folder: Path) -> list[Path]:
    """Temporary files of checkpoint writes in ``folder`` (a crash cut those short)."""
    return sorted(folder.glob(f"*{TMP_SUFFIX}")) if folder.is_dir() else []


def remove_temporaries(folder: Path) -> list[str]:
    """Delete the temporary files of checkpoint writes a dead coordinator left behind.

    Only for a caller that holds the job's lock: then no writer of this job is alive,
    and a temporary file can only be a write that a crash cut short.
    """
    removed: list[str] = []
    for tmp in temporaries(folder):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp.name)
    return removed


class NotACheckpointError(StateDamagedError):
    """A file whose header is not a mapwise checkpoint's: in a job, damage; given to
    ``import``, the wrong file (a user error)."""


def _migrate(header: dict[str, Any], path: Path) -> None:
    """Refuse newer formats; older ones would be upgraded here, record by record."""
    version = header.get("version")
    if header.get("format") != FORMAT or not isinstance(version, int):
        raise NotACheckpointError(f"{path} is not a mapwise checkpoint")
    if version > FORMAT_VERSION:
        raise StateDamagedError(
            f"{path} is checkpoint format version {version}, newer than this mapwise "
            f"reads ({FORMAT_VERSION}); upgrade mapwise"
        )


def read_checkpoint(path: Path, *, records: bool = True) -> Checkpoint:
    """Read and verify a checkpoint; any damage is ``StateDamagedError`` naming the file.

    With ``records=False`` only the header is parsed (the checksum still covers every
    line): enough to list and validate checkpoints quickly.
    """
    digest = hashlib.sha256()
    parsed: dict[str, list[dict[str, Any]]] = {}
    header: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    count = 0
    try:
        with gzip.open(path, "rb") as packed:
            for line in packed:
                if end is not None:
                    raise StateDamagedError(f"{path}: data after the end record")
                if line.startswith(b'{"t":"end"') or line.startswith(b'{"t": "end"'):
                    end = json.loads(line)
                    continue
                digest.update(line)
                count += 1
                if header is None:
                    header = json.loads(line)
                    _migrate(header, path)
                elif records:
                    data = json.loads(line)
                    parsed.setdefault(data.pop("t"), []).append(data)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise StateDamagedError(f"{path} is damaged: {exc}") from exc
    if header is None or end is None:
        raise StateDamagedError(f"{path} is truncated (no end record)")
    if end.get("records") != count or end.get("sha256") != digest.hexdigest():
        raise StateDamagedError(f"{path} fails its checksum")
    return Checkpoint(header, parsed)


def read_header(path: Path) -> dict[str, Any]:
    """Only the first line of a checkpoint: cheap, for comparing it with the database."""
    try:
        with gzip.open(path, "rb") as packed:
            header: dict[str, Any] = json.loads(packed.readline())
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise StateDamagedError(f"{path} is damaged: {exc}") from exc
    _migrate(header, path)
    return header


def inspect_checkpoints(folder: Path) -> list[CheckpointInfo]:
    """Every checkpoint in ``folder`` with whether it reads back valid."""
    infos = []
    for sequence, path in checkpoint_files(folder):
        size = path.stat().st_size
        try:
            checkpoint = read_checkpoint(path, records=False)
        except StateDamagedError as exc:
            infos.append(CheckpointInfo(sequence, path, None, None, None, size, False, str(exc)))
            continue
        header = checkpoint.header
        infos.append(
            CheckpointInfo(
                sequence,
                path,
                header.get("created_at"),
                header.get("phase"),
                checkpoint.completed_items(),
                size,
                True,
            )
        )
    return infos


def restore_database(checkpoint: Checkpoint, db_path: Path) -> None:
    """Build a new database at ``db_path`` (must not exist) from ``checkpoint``."""
    from mapwise.store import db

    conn = db.connect(db_path, create=True)
    try:
        with db.transaction(conn):
            for kind, table, _ in TABLES:
                rows = checkpoint.records.get(kind, [])
                if not rows:
                    continue
                names = list(rows[0].keys())
                marks = ", ".join("?" for _ in names)
                conn.executemany(
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})",
                    [tuple(row[n] for n in names) for row in rows],
                )
    finally:
        conn.close()


def prune(folder: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints; older ones are removed."""
    files = checkpoint_files(folder)
    for _, path in files[: max(len(files) - keep, 0)]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def next_sequence(folder: Path) -> int:
    files = checkpoint_files(folder)
    return files[-1][0] + 1 if files else 1


def fold_wal(conn: sqlite3.Connection) -> None:
    """Copy the WAL's pages into the database file, so that a lost WAL costs little.

    PASSIVE: it never waits for the writer, and what a reader still needs stays.
    """
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
