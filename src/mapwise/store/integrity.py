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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mapwise.domain.states import ItemStatus
from mapwise.errors import StateDamagedError
from mapwise.store import db, precheck
from mapwise.store.checkpoint import (
    CheckpointInfo,
    checkpoint_files,
    inspect_checkpoints,
    read_checkpoint,
    read_header,
    restore_database,
    temporaries,
)
from mapwise.store.dbfile import schema_problems
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


def _database_findings(paths: JobPaths) -> tuple[list[Finding], sqlite3.Connection | None]:
    """Open the database and run the checks that ``verify`` and ``resume`` share.

    ``PRAGMA integrity_check`` rather than ``quick_check``: the quick one skips whether
    each index matches its table, so a byte flipped in an index entry passed a resume
    that verify then called damaged (bug N). The schema's text is compared with the
    one its version must have (``dbfile``), which neither pragma reads.
    """
    if not paths.database.exists():
        return [Finding("database", f"{paths.database} is missing")], None
    try:
        # on a read-only mount only a reading connection opens (a read-only state is
        # not damage); elsewhere the usual one, which replays the WAL
        readonly = db.on_read_only_file_system(paths.database)
        conn = db.connect(paths.database, readonly=readonly)
    except (StateDamagedError, sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        return [Finding("database", f"cannot be read: {exc}")], None
    try:
        # a resume started the same check while the program was starting (precheck)
        result = precheck.take(paths.database)
        if result is None:
            result = conn.execute("PRAGMA integrity_check").fetchall()
        problems = schema_problems(conn)
    except (StateDamagedError, sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        return [Finding("database", f"cannot be read: {exc}")], conn
    findings = [Finding("database", f"schema damaged: {p}") for p in problems[:5]]
    if result != [("ok",)]:
        text = "; ".join(str(r[0]) for r in result[:5])
        findings.insert(0, Finding("database", f"integrity check failed: {text}"))
    return findings, conn


def _count_findings(conn: sqlite3.Connection) -> list[Finding]:
    """The kept item counts add up to the frozen total (the cheap half of the invariants)."""
    total, kept = conn.execute(
        "SELECT (SELECT total_items FROM job WHERE id = 1),"
        " (SELECT COALESCE(SUM(n), 0) FROM item_counts)"
    ).fetchone()
    if total is not None and total != kept:
        return [Finding("database", f"{kept} items counted, {total} frozen")]
    return []


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


def _behind(conn: sqlite3.Connection, header: dict[str, Any]) -> int | None:
    """How many succeeded items the database lacks against a checkpoint's header, or
    None when it lacks nothing (neither items nor attempts)."""
    succeeded = conn.execute("SELECT COUNT(*) FROM items WHERE status = 'succeeded'").fetchone()
    max_attempt = conn.execute("SELECT COALESCE(MAX(id), 0) FROM attempts").fetchone()
    behind_items = int(header.get("counts", {}).get("succeeded", 0)) - int(succeeded[0])
    behind_attempts = int(header.get("max_attempt_id", 0)) - int(max_attempt[0])
    if behind_items > 0 or behind_attempts > 0:
        return max(behind_items, 0)
    return None


def _stale_finding(sequence: int, behind: int) -> Finding:
    return Finding(
        "database",
        f"older than checkpoint {sequence} ({behind} succeeded items and some attempts "
        "missing): committed changes were lost, e.g. a deleted WAL file",
    )


def _staleness_findings(conn: sqlite3.Connection, infos: list[CheckpointInfo]) -> list[Finding]:
    """A database older than its newest valid checkpoint lost commits (a deleted WAL, say)."""
    valid = [i for i in infos if i.valid]
    if not valid:
        return []
    newest = valid[-1]
    try:
        header = read_header(newest.path)
    except StateDamagedError:
        return []
    behind = _behind(conn, header)  # a failing read is a finding, as in quick_verify
    return [] if behind is None else [_stale_finding(newest.sequence, behind)]


def _quick_staleness_findings(conn: sqlite3.Connection, paths: JobPaths) -> list[Finding]:
    """``_staleness_findings`` without reading every checkpoint through.

    The newest checkpoint is judged by its header alone while the database is not behind
    it (the usual case: cheap). A header that says the database is behind is believed
    only once the whole file passes its checksum; a damaged one is passed over for the
    next older, exactly as ``verify`` picks the newest *valid* checkpoint. (Trusting a
    header was bug N's other half: a checkpoint damaged past its first line made resume
    call the database stale while verify, reading that checkpoint invalid, did not.)
    """
    for sequence, path in reversed(checkpoint_files(paths.checkpoints)):
        try:
            behind = _behind(conn, read_header(path))
        except StateDamagedError:
            continue
        if behind is None:
            return []
        try:
            read_checkpoint(path, records=False)
        except StateDamagedError:
            continue
        return [_stale_finding(sequence, behind)]
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
    """Every finding about a job's state; an empty list means it is sound.

    Every check ``quick_verify`` makes is made here too, so a resume never refuses a job
    that verify passes; verify adds what is too slow for a resume: checkpoints read
    through and the item-by-item invariants.
    """
    wal_existed = _wal_path(paths).exists()  # before opening, which creates one
    _mark_wal_damage(paths)
    findings, conn = _database_findings(paths)
    checkpoint_findings, infos = _checkpoint_findings(paths)
    findings += checkpoint_findings
    if conn is not None:
        try:
            findings += _wal_findings(paths, wal_existed, conn)
            findings += _guarded(_count_findings, conn)
            findings += _invariant_findings(conn)
            findings += _guarded(lambda c: _staleness_findings(c, infos), conn)
        finally:
            conn.close()
    return findings


def _guarded(
    check: Callable[[sqlite3.Connection], list[Finding]], conn: sqlite3.Connection
) -> list[Finding]:
    try:
        return check(conn)
    except sqlite3.DatabaseError as exc:
        return [Finding("database", f"cannot be read: {exc}")]


def quick_verify(paths: JobPaths) -> list[Finding]:
    """The checks a resume makes before it runs: a subset of ``verify``'s, made the same way.

    The database's check (``integrity_check`` and the schema), the kept counts, a lost
    or damaged WAL, and staleness against the newest valid checkpoint. Left to
    ``verify``: reading every checkpoint through and the item-by-item invariants.
    """
    wal_existed = _wal_path(paths).exists()
    _mark_wal_damage(paths)
    findings, conn = _database_findings(paths)
    if conn is None:
        return findings
    try:
        findings += _wal_findings(paths, wal_existed, conn)
        findings += _guarded(_count_findings, conn)
        findings += _guarded(lambda c: _quick_staleness_findings(c, paths), conn)
    except sqlite3.DatabaseError as exc:
        findings.append(Finding("database", f"cannot be read: {exc}"))
    finally:
        conn.close()
    return findings


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
