"""Writing the frozen items: the stored text, the digest and the rows must be what one
``json.dumps`` and one INSERT per item gave, whatever the batch boundaries."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapwise.store import db
from mapwise.store.itemrows import (
    ROWS_PER_STATEMENT,
    DuplicateItemIdError,
    ItemsDigest,
    compact_json,
    insert_items,
    items_digest,
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from([math.nan, -math.inf, -0.0, 10**30])
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@given(JSON_VALUES)
def test_compact_json_is_json_dumps(value: Any) -> None:
    assert compact_json(value) == dumps(value)


def test_compact_json_refuses_what_json_dumps_refuses() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        compact_json({"a": object()})


@given(st.lists(st.tuples(st.text(), JSON_VALUES.map(dumps)), max_size=8))
def test_items_digest_fed_one_by_one_is_items_digest(rows: list[tuple[str, str]]) -> None:
    digest = ItemsDigest()
    for item_id, data in rows:
        digest.add(item_id, data)
    assert digest.hexdigest() == items_digest(rows)


def _database(tmp_path: Path) -> Any:
    path = tmp_path / "state.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return db.connect(path, create=True)


@pytest.mark.parametrize(
    "count", [0, 1, ROWS_PER_STATEMENT - 1, ROWS_PER_STATEMENT, 2 * ROWS_PER_STATEMENT + 1]
)
def test_rows_count_and_digest_across_batches(tmp_path: Path, count: int) -> None:
    # Given items streamed from a generator, across statement boundaries
    conn = _database(tmp_path)
    items = [(f"id-{i}", {"n": i, "s": "é" * (i % 3)}) for i in range(count)]
    with db.transaction(conn):
        total, digest = insert_items(conn, (item for item in items))
    # Then: one pending row per item, in order, with the text json.dumps gives
    rows = conn.execute("SELECT idx, item_id, data, status FROM items ORDER BY idx").fetchall()
    expected = [(i, item_id, dumps(value), "pending") for i, (item_id, value) in enumerate(items)]
    assert rows == expected
    assert total == count
    assert digest == items_digest((item_id, dumps(value)) for item_id, value in items)
    # and the trigger-kept counts agree
    counts = conn.execute("SELECT n FROM item_counts WHERE status = 'pending'").fetchall()
    assert counts == ([(count,)] if count else [])


def test_a_duplicate_id_stores_nothing(tmp_path: Path) -> None:
    # Given a duplicate id in the second batch
    conn = _database(tmp_path)
    items = [(str(i), i) for i in range(ROWS_PER_STATEMENT + 5)] + [("3", "again")]
    # When they are inserted in a transaction
    unique = pytest.raises(DuplicateItemIdError, match="item ids must be unique")
    with unique, db.transaction(conn):
        insert_items(conn, iter(items))
    # Then: the transaction is rolled back whole
    assert conn.execute("SELECT COUNT(*) FROM items").fetchone() == (0,)
