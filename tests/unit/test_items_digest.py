"""The items digest is stored in every job and checked by verify: its layout is fixed.

Checked against the bytes it is defined over (``id NUL json LF`` per item, UTF-8), a
value computed once and written here, and the digest a version 1 job stored.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mapwise.store.itemrows import ItemsDigest, items_digest

V1_DB = Path(__file__).parent.parent / "fixtures" / "v1" / "state.db"
PAIRS = [("a", '{"x":1}'), ("é", '"ü"')]


def test_the_digest_of_known_items_is_the_one_on_record() -> None:
    assert items_digest(PAIRS) == (
        "78e011ce0fd24834f112b7ffcb9dd7f2164501b2ad19cade7d6d4b249f2e4039"
    )
    assert items_digest([]) == hashlib.sha256(b"").hexdigest()


@given(st.lists(st.tuples(st.text(), st.text()), max_size=6))
def test_the_digest_is_sha256_of_id_nul_json_newline(pairs: list[tuple[str, str]]) -> None:
    expected = hashlib.sha256(b"".join(i.encode() + b"\0" + d.encode() + b"\n" for i, d in pairs))
    assert items_digest(iter(pairs)) == expected.hexdigest()


def test_fed_one_at_a_time_or_whole_it_is_the_same() -> None:
    digest = ItemsDigest()
    for item_id, data in PAIRS:
        digest.add(item_id, data)
    assert digest.hexdigest() == items_digest(PAIRS)


def test_a_version_1_jobs_stored_digest_matches_its_rows(tmp_path: Path) -> None:
    # a copy: even a read-only reader of a WAL database leaves -wal and -shm files beside it
    copy = tmp_path / "state.db"
    shutil.copyfile(V1_DB, copy)
    conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        (stored,) = conn.execute("SELECT items_sha256 FROM job").fetchone()
        rows = conn.execute("SELECT item_id, data FROM items ORDER BY idx").fetchall()
    finally:
        conn.close()
    assert rows and items_digest(rows) == stored
