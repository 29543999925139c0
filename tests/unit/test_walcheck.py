"""Walking a WAL's frames (``store.walcheck``) on real WAL files that SQLite wrote."""

from __future__ import annotations

import shutil
import sqlite3
import struct
from pathlib import Path

import pytest

from mapwise.store.walcheck import FRAME_HEADER, WAL_HEADER, _checksum, wal_damage


@pytest.fixture
def wal(tmp_path: Path) -> Path:
    """A copy of a live WAL holding several committed transactions (frames)."""
    db = tmp_path / "db.sqlite"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x TEXT)")
    for n in range(6):
        conn.execute("INSERT INTO t VALUES (?)", (f"row {n} " * 200,))
    copy = tmp_path / "copy-wal"
    shutil.copy(tmp_path / "db.sqlite-wal", copy)
    conn.close()
    return copy


def frame_size(wal: Path) -> int:
    return FRAME_HEADER + struct.unpack(">I", wal.read_bytes()[8:12])[0]


def flip(wal: Path, offset: int) -> None:
    data = bytearray(wal.read_bytes())
    data[offset] ^= 0x5A
    wal.write_bytes(bytes(data))


def test_an_intact_wal_loses_nothing(wal: Path) -> None:
    assert wal.stat().st_size > WAL_HEADER + 3 * frame_size(wal)
    assert wal_damage(wal) is None


def test_a_damaged_frame_that_later_frames_follow_is_found(wal: Path) -> None:
    # Given a byte flipped in the first frame's page, with more frames after it
    flip(wal, WAL_HEADER + FRAME_HEADER + 100)
    # Then the damage is named: opening would drop every later frame
    found = wal_damage(wal)
    assert found is not None and "frame 1 is damaged" in found


def test_damage_in_the_last_frame_looks_like_a_torn_write(wal: Path) -> None:
    # A torn last write of a transaction that never committed is normal after a crash,
    # and damage there cannot be told from it (SQLite drops both)
    flip(wal, wal.stat().st_size - 10)
    assert wal_damage(wal) is None


def test_a_damaged_header_is_found(wal: Path) -> None:
    flip(wal, 16)  # a salt
    found = wal_damage(wal)
    assert found is not None and "header" in found


def test_a_wal_cut_at_a_frame_boundary_looks_like_a_clean_end(wal: Path) -> None:
    size = frame_size(wal)
    wal.write_bytes(wal.read_bytes()[: WAL_HEADER + 2 * size])
    assert wal_damage(wal) is None


def test_a_missing_or_empty_wal_loses_nothing(tmp_path: Path) -> None:
    assert wal_damage(tmp_path / "none") is None
    (tmp_path / "empty").write_bytes(b"")
    assert wal_damage(tmp_path / "empty") is None


def test_a_byte_flipped_in_a_frames_stored_checksum_is_found(wal: Path) -> None:
    flip(wal, WAL_HEADER + 16)  # the first frame's first checksum word
    found = wal_damage(wal)
    assert found is not None and "frame 1 is damaged" in found


def _chained(frames: list[tuple[int, int, bytes]], data: bytes, at: int, big: bool) -> bytes:
    """``frames`` (page number, commit size, page) as SQLite would write them after the
    frame that ends at ``at`` in ``data``: same salts, checksums chained from it."""
    s1, s2 = struct.unpack(">2I", data[at - 8 : at])
    salts = data[16:24]
    out = b""
    for page, commit, body in frames:
        head = struct.pack(">2I", page, commit)
        s1, s2 = _checksum(head, s1, s2, big)
        s1, s2 = _checksum(body, s1, s2, big)
        out += head + salts + struct.pack(">2I", s1, s2) + body
    return out


def test_frames_a_failed_write_left_behind_on_a_full_disk_are_not_damage(wal: Path) -> None:
    # Given a WAL whose committed frames end, then a transaction's frames that failed
    # before its commit frame (a full disk), then the next transaction's first frame
    # written over the first of them only in part (a short write)
    data = wal.read_bytes()
    size = frame_size(wal)
    page = size - FRAME_HEADER
    big = bool(struct.unpack(">I", data[:4])[0] & 1)
    failed = _chained(
        [(2, 0, b"a" * page), (3, 0, b"b" * page), (4, 0, b"c" * page)], data, len(data), big
    )
    rewrite = _chained([(2, 9, b"z" * page)], data, len(data), big)
    cut = FRAME_HEADER + page // 3
    damaged = data + rewrite[:cut] + failed[cut:]
    wal.write_bytes(damaged)

    # Then nothing committed is lost: SQLite drops those frames, and so does the check
    assert wal_damage(wal) is None
    # But a flipped byte in a frame whose chain goes on to a commit frame is damage
    committed = _chained([(2, 0, b"a" * page), (3, 9, b"b" * page)], data, len(data), big)
    flipped = bytearray(data + committed)
    flipped[len(data) + FRAME_HEADER + 7] ^= 0x5A
    wal.write_bytes(bytes(flipped))
    found = wal_damage(wal)
    assert found is not None and "1 later frame(s)" in found
