"""Damage at chosen places: the reproductions of what the random cases can hit, and the
combinations they do not make (a database and its newest checkpoint, every checkpoint).

Each case copies a job killed halfway (``damage_template``: a checkpoint every 5 items;
``wal_template``: only the checkpoint taken when the items were frozen, so every success
is in the WAL's live frames), damages it, and runs the user's flow of ``helpers.damage``.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import struct
import sys
from pathlib import Path

import pytest

from helpers.damage import ITEMS, JOB, Case, Template, check_final, user_flow

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals, flock")

WAL_HEADER = 32
FRAME_HEADER = 24


@pytest.fixture(autouse=True)
def _environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAPWISE_KILL_GRACE", "0.5")
    monkeypatch.delenv("MAPWISE_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


def _checkpoints(case: Case) -> list[Path]:
    return sorted((case.job_dir / "checkpoints").glob("*.ckpt"))


def _halve(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _cut_database(case: Case) -> None:
    """Cut ``state.db`` to its first page, its WAL folded in first.

    Why fold: a page the WAL holds is read from the WAL, so a cut file can still be a
    whole database. The template's WAL sometimes holds every page (1 template in 10
    here; CI once built such a template, and halving the file was then no damage at
    all). Why the first page: it names every table's root page, and none is page 1.
    """
    _fold_wal(case)
    database = case.job_dir / "state.db"
    (page_size,) = struct.unpack(">H", database.read_bytes()[16:18])
    with database.open("r+b") as f:
        f.truncate(page_size)


def test_a_deleted_database_is_found_and_rebuilt_from_the_checkpoints(
    damage_template: Template, tmp_path: Path
) -> None:
    case = Case.copy(damage_template, tmp_path / "case")
    (case.job_dir / "state.db").unlink()
    case.description = "deleted state.db"

    flow = user_flow(case)

    assert flow.verify.returncode == 4
    assert "database" in flow.verify.stdout
    check_final(case, flow)


def test_a_checkpoint_with_a_garbled_stream_is_reported_damaged(
    damage_template: Template, tmp_path: Path
) -> None:
    # Given the newest checkpoint's deflate stream overwritten after its gzip header
    case = Case.copy(damage_template, tmp_path / "case")
    newest = _checkpoints(case)[-1]
    data = newest.read_bytes()
    newest.write_bytes(data[:10] + b"\xff" * (len(data) - 10))
    case.description = f"garbled {newest.name}"

    # Then it is listed as invalid and verify reports it; the user's flow completes
    listed = case.cli("checkpoints", JOB, "--json")
    assert listed.returncode == 0
    assert json.loads(listed.stdout)[-1]["valid"] is False
    flow = user_flow(case)
    assert flow.verify.returncode == 4
    assert newest.name in flow.verify.stdout
    check_final(case, flow)


def test_a_garbled_schema_text_is_reported_damaged(
    damage_template: Template, tmp_path: Path
) -> None:
    # Given the items table's schema text ending in two bytes that are not UTF-8 (a
    # flipped byte in the schema; written through SQLite, which folds the WAL in)
    case = Case.copy(damage_template, tmp_path / "case")
    conn = sqlite3.connect(case.job_dir / "state.db")
    try:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'items'").fetchone()
        conn.execute("PRAGMA writable_schema = ON")
        garbled = sql.encode() + b" \xbe\xbe"
        conn.execute(
            "UPDATE sqlite_master SET sql = CAST(? AS TEXT) WHERE name = 'items'", (garbled,)
        )
        conn.commit()
    finally:
        conn.close()
    case.description = "garbled schema text"

    # Then verify reports damage, and repair and resume bring the job back
    flow = user_flow(case)
    assert flow.verify.returncode == 4
    check_final(case, flow)


def _first_wal_frame_data(wal: Path) -> int:
    """The offset of the first frame's page data (after the WAL and frame headers)."""
    header = wal.read_bytes()[:WAL_HEADER]
    magic, _version, page_size = struct.unpack(">III", header[:12])
    assert magic in (0x377F0682, 0x377F0683), "not a WAL file"
    assert wal.stat().st_size >= WAL_HEADER + FRAME_HEADER + page_size, "empty WAL"
    return WAL_HEADER + FRAME_HEADER


def test_damaged_wal_frames_are_found_before_anything_is_lost(
    wal_template: Template, tmp_path: Path
) -> None:
    # Given a job whose successes are all in the WAL, and a byte flipped in its first frame
    case = Case.copy(wal_template, tmp_path / "case")
    wal = case.job_dir / "state.db-wal"
    data = bytearray(wal.read_bytes())
    data[_first_wal_frame_data(wal) + 100] ^= 0x5A
    wal.write_bytes(bytes(data))
    case.description = "flipped a byte of the first WAL frame"

    # Then verify finds it, and no success is lost without repair saying so
    flow = user_flow(case)
    assert flow.verify.returncode == 4, flow.verify.stdout
    check_final(case, flow)


def test_repair_after_a_deleted_wal_announces_what_runs_again(
    wal_template: Template, tmp_path: Path
) -> None:
    case = Case.copy(wal_template, tmp_path / "case")
    (case.job_dir / "state.db-wal").unlink()
    (case.job_dir / "state.db-shm").unlink(missing_ok=True)
    case.description = "deleted state.db-wal"

    flow = user_flow(case)

    assert flow.verify.returncode == 4
    assert "WAL" in flow.verify.stdout
    assert flow.repair is not None
    check_final(case, flow)


def test_a_summary_that_counts_too_many_does_not_block_resume(
    damage_template: Template, tmp_path: Path
) -> None:
    # Bug F: a summary.json (the listing cache older versions wrote, without fsync) that
    # counted more than the database made verify report lost commits and resume refuse
    case = Case.copy(damage_template, tmp_path / "case")
    summary_path = case.job_dir / "summary.json"
    summary = {"version": 1, "progress": {"completed_items": ITEMS - 1, "failed_items": 0}}
    summary_path.write_text(json.dumps(summary))
    case.description = "summary.json counting 39 completed items"

    flow = user_flow(case)

    assert flow.resume.returncode == 0, flow.resume.stderr
    assert case.reran() == set()


def test_a_damaged_database_and_newest_checkpoint_rebuild_from_an_older_one(
    damage_template: Template, tmp_path: Path
) -> None:
    # Given a cut database and a truncated newest checkpoint
    case = Case.copy(damage_template, tmp_path / "case")
    checkpoints = _checkpoints(case)
    assert len(checkpoints) >= 2
    _cut_database(case)
    _halve(checkpoints[-1])
    case.description = "state.db cut to its first page and a truncated newest checkpoint"

    # When the user verifies, resumes, repairs and resumes
    flow = user_flow(case)

    # Then repair rebuilt from the checkpoint before the newest, and the job completed
    assert flow.verify.returncode == 4
    assert flow.repair is not None
    older = int(checkpoints[-2].stem.removeprefix("ckpt-"))
    assert f"rebuilt the database from checkpoint {older};" in flow.repair.stdout
    assert f"moved damaged checkpoint {older + 1} aside" in flow.repair.stdout
    check_final(case, flow)


def test_a_damaged_database_without_a_valid_checkpoint_is_refused_cleanly(
    damage_template: Template, tmp_path: Path
) -> None:
    # Given a cut database and every checkpoint truncated
    case = Case.copy(damage_template, tmp_path / "case")
    _cut_database(case)
    for checkpoint in _checkpoints(case):
        _halve(checkpoint)

    # Then verify, resume and repair all report exit 4, without a traceback
    assert case.cli("verify", JOB).returncode == 4
    resumed = case.cli("resume", JOB)
    assert resumed.returncode == 4
    assert "mapwise repair" in resumed.stderr
    repaired = case.cli("repair", JOB)
    assert repaired.returncode == 4
    assert "no valid checkpoint" in repaired.stderr
    # And nothing ran, and the damaged files are still there to be rescued by hand
    assert case.reran() == set()
    assert (case.job_dir / "state.db").exists()


def _fold_wal(case: Case) -> None:
    """Fold the WAL into ``state.db``, so a byte written into the file is the one SQLite
    reads, not a newer copy in the WAL; an empty WAL stays, as a crash would leave it
    (a missing one is itself damage: commits lost)."""
    conn = sqlite3.connect(case.job_dir / "state.db")
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    (case.job_dir / "state.db-wal").touch()


def _page_of(case: Case, name: str) -> tuple[int, int]:
    """The root page of a table or index, and the page size."""
    conn = sqlite3.connect(case.job_dir / "state.db")
    try:
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)
        ).fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    finally:
        conn.close()
    return int(root), int(page_size)


def _flip_last_byte_of_first_index_entry(case: Case, index: str) -> None:
    """Change the last byte of the first entry of a one-page index (its rowid, or the
    key's text when the rowid is stored in the serial type alone, as 0 and 1 are)."""
    root, page_size = _page_of(case, index)
    db = case.job_dir / "state.db"
    data = bytearray(db.read_bytes())
    page = (root - 1) * page_size
    header = page + (100 if root == 1 else 0)
    assert data[header] == 0x0A, "not a leaf index page: the job grew past one page"
    (cell,) = struct.unpack(">H", data[header + 8 : header + 10])
    payload = data[page + cell]  # a small cell: one byte of payload length
    assert payload < 0x80
    data[page + cell + payload] ^= 0x01  # the record's last byte
    db.write_bytes(bytes(data))
    (case.job_dir / "state.db-wal").touch()  # closing the reading connection removed it


def test_index_damage_makes_verify_and_resume_both_refuse(
    damage_template: Template, tmp_path: Path
) -> None:
    # Bug N: quick_check skips whether an index matches its table, so resume ran on a
    # database that verify's integrity_check called damaged
    # Given an entry of the item-id index no longer matching its row (pages intact)
    case = Case.copy(damage_template, tmp_path / "case")
    _fold_wal(case)
    _flip_last_byte_of_first_index_entry(case, "sqlite_autoindex_items_1")
    case.description = "flipped a byte of an entry of the items' id index"

    # Then verify exits 4 naming the index, and resume refuses before running anything
    flow = user_flow(case)
    assert flow.verify.returncode == 4, flow.verify.stdout
    assert "sqlite_autoindex_items_1" in flow.verify.stdout
    assert flow.resume.returncode == 4, flow.resume.stderr
    assert flow.repair is not None
    check_final(case, flow)


def test_a_damaged_entry_of_the_status_index_is_refused_by_resume(
    damage_template: Template, tmp_path: Path
) -> None:
    # Given a damaged entry of the index that resume claims pending items by
    case = Case.copy(damage_template, tmp_path / "case")
    _fold_wal(case)
    _flip_last_byte_of_first_index_entry(case, "items_by_status")

    flow = user_flow(case)

    assert flow.verify.returncode == 4, flow.verify.stdout
    assert flow.resume.returncode == 4, flow.resume.stderr
    check_final(case, flow)


def test_a_renamed_column_in_the_schema_is_damage_for_verify_and_resume(
    damage_template: Template, tmp_path: Path
) -> None:
    # Bug N, the reverse: a flipped byte in a column's name in the schema text parses and
    # passes integrity_check, so verify was clean, while the resume failed (exit 4) at
    # its first write naming the column. Now both call it damage, and repair rebuilds it
    case = Case.copy(damage_template, tmp_path / "case")
    _fold_wal(case)
    db = case.job_dir / "state.db"
    data = db.read_bytes()
    assert data.count(b"input_tokens ") == 1
    db.write_bytes(data.replace(b"input_tokens ", b"inpup_tokens "))
    case.description = "renamed agent_runs.input_tokens in the schema text"

    flow = user_flow(case)

    assert flow.verify.returncode == 4, flow.verify.stdout
    assert "schema" in flow.verify.stdout
    assert flow.resume.returncode == 4, flow.resume.stderr
    check_final(case, flow)


def test_a_checkpoint_damaged_past_its_header_does_not_make_resume_call_the_database_stale(
    damage_template: Template, tmp_path: Path
) -> None:
    # Bug N, the reverse: resume compared the database with the newest checkpoint whose
    # first line read, verify with the newest valid one; a checkpoint whose header
    # claims more than the database holds but whose body fails its checksum made resume
    # refuse a database that verify found sound
    case = Case.copy(damage_template, tmp_path / "case")
    newest = _checkpoints(case)[-1]
    with gzip.open(newest, "rb") as packed:
        lines = packed.read().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["counts"]["succeeded"] = ITEMS
    header["max_attempt_id"] = 10**6
    with gzip.open(newest, "wb") as packed:
        packed.write(json.dumps(header).encode() + b"\n" + b"".join(lines[1:]))
    case.description = f"{newest.name} claiming every item succeeded, failing its checksum"

    flow = user_flow(case)

    # Then verify reports the checkpoint (not the database) and resume is not blocked
    assert flow.verify.returncode == 4, flow.verify.stdout
    assert newest.name.removesuffix(".ckpt").removeprefix("ckpt-") in flow.verify.stdout
    assert "older than checkpoint" not in flow.verify.stdout
    assert flow.resume.returncode == 0, flow.resume.stderr
    check_final(case, flow)
