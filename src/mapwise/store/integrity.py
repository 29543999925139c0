"""Verify and repair a job's state: the database, its checkpoints, and the invariants.

``verify`` reports every finding; ``repair`` rebuilds a damaged database from the newest
valid checkpoint and moves damaged or orphaned files aside. Nothing is deleted: whatever
repair replaces goes into a ``backup-<time>/`` folder beside it.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from mapwise.domain.states import ItemStatus
from mapwise.errors import StateDamagedError
from mapwise.store import db
from mapwise.store.checkpoint import (
    CheckpointInfo,
    checkpoint_files,
    inspect_checkpoints,
    read_checkpoint,
    read_header,
    restore_database,
    temporaries,
)
from mapwise.store.itemrows import items_digest
from mapwise.store.jobstore import JobStore
from mapwise.store.lock import is_locked
from mapwise.store.paths import JobPaths
from mapwise.store.walcheck import wal_damage

DAMAGE_MARKER = "damaged"  # written when a loss is found that reopening would hide
VALID_ITEM_STATUSES = {status.value for status in ItemStatus}


@dataclass(frozen=True)
class Finding:
    """One problem ``verify`` found; ``damage`` findings make ``resume`` refuse the job."""

    where: str  # "database", "checkpoint 3", "checkpoints folder", ...
    message: str
    damage: bool = True


def _database_findings(
    paths: JobPaths, *, quick: bool = False
) -> tuple[list[Finding], sqlite3.Connection | None]:
    if not paths.database.exists():
        return [Finding("database", f"{paths.database} is missing")], None
    pragma = "quick_check" if quick else "integrity_check"
    try:
        # on a read-only mount only a reading connection opens (a read-only state is
        # not damage); elsewhere the usual one, which replays the WAL
        readonly = db.on_read_only_file_system(paths.database)
        conn = db.connect(paths.database, readonly=readonly)
        result = conn.execute(f"PRAGMA {pragma}").fetchall()
    except (StateDamagedError, sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        return [Finding("database", f"cannot be read: {exc}")], None
    if result != [("ok",)]:
        text = "; ".join(str(r[0]) for r in result[:5])
        return [Finding("database", f"integrity check failed: {text}")], conn
    return [], conn


def _invariant_findings(conn: sqlite3.Connection) -> list[Finding]:
    """The state's own rules: what a consistent job database always satisfies."""
    findings: list[Finding] = []
    try:
        job = conn.execute("SELECT total_items, items_sha256 FROM job WHERE id = 1").fetchone()
        if job is None:
            return [Finding("database", "the job record is missing")]
        total, digest = job
        rows = conn.execute("SELECT item_id, data, status FROM items ORDER BY idx").fetchall()
    except sqlite3.DatabaseError as exc:
        return [Finding("database", f"cannot be read: {exc}")]
    if total is not None and total != len(rows):
        findings.append(Finding("database", f"{len(rows)} items stored, {total} frozen"))
    if digest is not None and items_digest((r[0], r[1]) for r in rows) != digest:
        findings.append(Finding("database", "the frozen items do not match their hash"))
    bad = sorted({r[2] for r in rows} - VALID_ITEM_STATUSES)
    if bad:
        findings.append(Finding("database", f"unknown item statuses: {', '.join(bad)}"))
    actual = dict(conn.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall())
    kept = dict(conn.execute("SELECT status, n FROM item_counts WHERE n != 0").fetchall())
    if actual != kept:
        findings.append(Finding("database", f"item counts {kept} do not match the items {actual}"))
    # NOT IN builds the set of proven items once; a correlated NOT EXISTS may pick the
    # outcome index and turn quadratic on big jobs
    unproven = conn.execute(
        "SELECT COUNT(*) FROM items WHERE status = 'succeeded' AND idx NOT IN"
        " (SELECT item_idx FROM attempts WHERE outcome = 'succeeded')"
    ).fetchone()[0]
    if unproven:
        findings.append(
            Finding("database", f"{unproven} succeeded items have no succeeded attempt")
        )
    return findings


def _checkpoint_findings(paths: JobPaths) -> tuple[list[Finding], list[CheckpointInfo]]:
    infos = inspect_checkpoints(paths.checkpoints)
    findings = [
        Finding(f"checkpoint {i.sequence}", i.problem or "invalid") for i in infos if not i.valid
    ]
    for tmp in temporaries(paths.checkpoints):
        findings.append(
            Finding("checkpoints folder", f"orphaned temporary file {tmp.name}", damage=False)
        )
    return findings, infos


def _wal_findings(paths: JobPaths, wal_existed: bool, conn: sqlite3.Connection) -> list[Finding]:
    """A job left running by a dead process always leaves its WAL file; none means lost.

    Opening the database makes a new, empty WAL, which would hide the loss from the next
    check; so the finding is also written to a ``damaged`` marker that ``repair`` clears.
    """
    marker = paths.root / DAMAGE_MARKER
    if marker.exists():
        return [Finding("database", marker.read_text().strip() or "marked damaged")]
    if wal_existed or is_locked(paths.lock) or not paths.running_marker.exists():
        # no crash (the marker goes at any other exit): a clean close removes the WAL
        return []
    row = conn.execute("SELECT status FROM job WHERE id = 1").fetchone()
    if row is None or row[0] != "running":
        return []
    message = "the WAL file of a job that did not stop cleanly is missing: commits were lost"
    with contextlib.suppress(OSError):
        marker.write_text(message + "\n")
    return [Finding("database", message)]


def _staleness_findings(conn: sqlite3.Connection, infos: list[CheckpointInfo]) -> list[Finding]:
    """A database older than its newest checkpoint lost commits (a deleted WAL, say)."""
    valid = [i for i in infos if i.valid]
    if not valid:
        return []
    newest = valid[-1]
    try:
        header = read_header(newest.path)
        succeeded = conn.execute("SELECT COUNT(*) FROM items WHERE status = 'succeeded'").fetchone()
        max_attempt = conn.execute("SELECT COALESCE(MAX(id), 0) FROM attempts").fetchone()
    except (StateDamagedError, sqlite3.DatabaseError):
        return []
    behind_items = int(header.get("counts", {}).get("succeeded", 0)) - int(succeeded[0])
    behind_attempts = int(header.get("max_attempt_id", 0)) - int(max_attempt[0])
    if behind_items > 0 or behind_attempts > 0:
        return [
            Finding(
                "database",
                f"older than checkpoint {newest.sequence} ({max(behind_items, 0)} succeeded "
                "items and some attempts missing): committed changes were lost, e.g. a deleted "
                "WAL file",
            )
        ]
    return []


def _wal_path(paths: JobPaths) -> Path:
    return paths.database.with_name(paths.database.name + "-wal")


def _mark_wal_damage(paths: JobPaths) -> None:
    """Before anything opens the database: a damaged WAL frame that later frames follow
    would be dropped on opening with every commit after it (``walcheck``). The finding is
    written to the ``damaged`` marker, which outlives the opening (``_wal_findings``
    reports it) until ``repair``. A job a live process runs is left alone: its WAL is
    being written while it would be read."""
    wal = _wal_path(paths)
    if not wal.exists() or is_locked(paths.lock):
        return
    damage = wal_damage(wal)
    if damage is not None:
        with contextlib.suppress(OSError):
            (paths.root / DAMAGE_MARKER).write_text(damage + "\n")


def verify(paths: JobPaths) -> list[Finding]:
    """Every finding about a job's state; an empty list means it is sound."""
    wal_existed = _wal_path(paths).exists()  # before opening, which creates one
    _mark_wal_damage(paths)
    findings, conn = _database_findings(paths)
    checkpoint_findings, infos = _checkpoint_findings(paths)
    findings += checkpoint_findings
    if conn is not None:
        try:
            findings += _wal_findings(paths, wal_existed, conn)
            findings += _invariant_findings(conn)
            findings += _staleness_findings(conn, infos)
        finally:
            conn.close()
    return findings


def quick_verify(paths: JobPaths) -> list[Finding]:
    """The checks a resume makes before it runs: pages, counts, and a lost WAL.

    ``PRAGMA quick_check`` finds damaged pages in C at disk speed; the item-by-item
    invariants are left to ``verify`` so that a resume of a big job starts at once.
    """
    wal_existed = _wal_path(paths).exists()
    _mark_wal_damage(paths)
    findings, conn = _database_findings(paths, quick=True)
    if conn is None:
        return findings
    try:
        total, kept = conn.execute(
            "SELECT (SELECT total_items FROM job WHERE id = 1),"
            " (SELECT COALESCE(SUM(n), 0) FROM item_counts)"
        ).fetchone()
        if total is not None and total != kept:
            findings.append(Finding("database", f"{kept} items counted, {total} frozen"))
        findings += _wal_findings(paths, wal_existed, conn)
        findings += _staleness_findings(conn, inspect_newest(paths))
    except sqlite3.DatabaseError as exc:
        findings.append(Finding("database", f"cannot be read: {exc}"))
    finally:
        conn.close()
    return findings


def inspect_newest(paths: JobPaths) -> list[CheckpointInfo]:
    """The newest checkpoint whose header reads, as a one-element list (or none)."""
    for sequence, path in reversed(checkpoint_files(paths.checkpoints)):
        try:
            header = read_header(path)
        except StateDamagedError:
            continue
        size = path.stat().st_size
        return [
            CheckpointInfo(
                sequence, path, header.get("created_at"), header.get("phase"), None, size, True
            )
        ]
    return []


@dataclass(frozen=True)
class RepairReport:
    """What ``repair`` did."""

    job_id: str
    actions: tuple[str, ...]
    restored_from: int | None = None  # the checkpoint the database was rebuilt from
    rerun_items: int | None = None  # items recorded done that will run again (None: unknown)
    backup_dir: str | None = None
    remaining: tuple[Finding, ...] = field(default_factory=tuple)


def _succeeded_in(path: Path) -> int | None:
    with contextlib.suppress(Exception):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT COUNT(*) FROM items WHERE status = 'succeeded'").fetchone()
            return int(row[0])
        finally:
            conn.close()
    return None


class Backup:
    """A folder beside the job's files where repair moves what it replaces."""

    def __init__(self, paths: JobPaths) -> None:
        self.folder = paths.root / f"backup-{time.strftime('%Y%m%d-%H%M%S')}"
        self.used = False

    def keep(self, path: Path) -> None:
        if not path.exists():
            return
        self.folder.mkdir(mode=0o700, exist_ok=True)
        self.used = True
        shutil.move(str(path), self.folder / path.name)


def _database_damaged(findings: list[Finding]) -> bool:
    return any(f.where == "database" and f.damage for f in findings)


def rebuild_from_checkpoint(paths: JobPaths, checkpoint_file: Path, backup: Backup) -> int | None:
    """Move the database aside and rebuild it from a checkpoint; return items to rerun."""
    checkpoint = read_checkpoint(checkpoint_file)
    before = _succeeded_in(paths.database) if paths.database.exists() else None
    for suffix in ("", "-wal", "-shm"):
        backup.keep(paths.database.with_name(paths.database.name + suffix))
    restore_database(checkpoint, paths.database)
    JobStore.open(paths).close()  # opening puts the rebuilt database in WAL mode, migrated
    if before is None:
        return None
    return max(before - checkpoint.completed_items(), 0)


def repair(paths: JobPaths) -> RepairReport:
    """Bring a damaged job back; the caller holds the job's lock."""
    findings = verify(paths)
    backup = Backup(paths)
    actions: list[str] = []
    restored_from: int | None = None
    rerun: int | None = None
    infos = inspect_checkpoints(paths.checkpoints)
    if _database_damaged(findings):
        valid = [i for i in infos if i.valid]
        if not valid:
            raise StateDamagedError(
                f"the database of job {paths.job_id} is damaged and no valid checkpoint exists "
                "to rebuild it from"
            )
        newest = valid[-1]
        # commits lost with a WAL (deleted, or damaged frames dropped on opening) are not
        # in the database either: how many items finished after the checkpoint is unknown
        wal_lost = (paths.root / DAMAGE_MARKER).exists()
        rerun = rebuild_from_checkpoint(paths, newest.path, backup)
        if wal_lost:
            rerun = None
        restored_from = newest.sequence
        lost = "an unknown number of" if rerun is None else str(rerun)
        actions.append(
            f"rebuilt the database from checkpoint {newest.sequence}; {lost} items finished "
            "after it will run again"
        )
    backup.keep(paths.root / DAMAGE_MARKER)
    for info in infos:
        if not info.valid:
            backup.keep(info.path)
            actions.append(f"moved damaged checkpoint {info.sequence} aside")
    for tmp in temporaries(paths.checkpoints):
        backup.keep(tmp)
        actions.append(f"moved orphaned temporary file {tmp.name} aside")
    remaining = tuple(f for f in verify(paths) if f.damage)
    return RepairReport(
        job_id=paths.job_id,
        actions=tuple(actions),
        restored_from=restored_from,
        rerun_items=rerun,
        backup_dir=str(backup.folder) if backup.used else None,
        remaining=remaining,
    )
