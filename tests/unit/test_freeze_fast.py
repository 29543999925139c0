"""The chunked freeze (a plain JSON array, ids their positions) must store exactly the rows
and digests of the item-at-a-time freeze, or step aside for it: same rows (idx, item id,
data text), same items digest, same input digest, same errors."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.freezing import frozen, listed, write_workflow
from mapwise.engine import freeze as freeze_module
from mapwise.items.chunked import NotChunked, array_chunks
from mapwise.store.itemrows import NotBulkError, insert_item_chunks, insert_items
from mapwise.store.schema import create_schema

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1.0, 1e5, -0.0, 0.1, 1.5e300, 2**63, -(2**63) - 1])
    | st.text(max_size=6)
    | st.sampled_from(["é", "\u2603", "a,b", "}, {", '"', "\\", "\n\x01", "\ud83d\ude00"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


def streamed_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(freeze_module, "_freeze_chunked", lambda store, plan, raw: None)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(VALUES, max_size=25), indent=st.sampled_from([None, 1]))
def test_the_chunked_freeze_stores_what_the_streamed_one_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values: list[Any], indent: int | None
) -> None:
    # Given a JSON array of any values (nested, unicode, floats, big ints, NaN)
    text = json.dumps(values, indent=indent, ensure_ascii=False)
    if not text.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        text = json.dumps(values, indent=indent)  # lone surrogates: as escapes
    (tmp_path / "items.json").write_text(text)
    workflow = write_workflow(tmp_path)
    # When it is frozen the fast way (where it can be) and the item-at-a-time way
    fast = frozen(tmp_path, workflow)
    with monkeypatch.context() as patch:
        streamed_only(patch)
        slow = frozen(tmp_path, workflow)
    # Then both store the same rows and digests, as the list resolution does
    assert fast == slow == listed(tmp_path, workflow)


def test_a_large_array_of_records_is_frozen_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given records whose strings hold the very commas and braces a cut looks for
    records = [{"n": i, "text": "x}, {y, z" * (i % 3), "v": [i, {"k": 1.5}]} for i in range(3000)]
    (tmp_path / "items.json").write_text(json.dumps(records, indent=2))
    workflow = write_workflow(tmp_path)
    monkeypatch.setattr(
        "mapwise.items.chunked.array_chunks",
        lambda text, chunk_chars=2000: array_chunks(text, chunk_chars=chunk_chars),
    )
    # When it is frozen
    with caplog.at_level(logging.DEBUG, logger="mapwise.engine.freeze"):
        fast = frozen(tmp_path, workflow)
    # Then the chunked freeze stored it (no fallback), exactly as the streamed one would
    assert not any("stopped" in r.message for r in caplog.records)
    with monkeypatch.context() as patch:
        streamed_only(patch)
        assert fast == frozen(tmp_path, workflow)


@pytest.mark.parametrize(
    "text",
    [
        "[1, 2]",
        '[{"a": 1}, "b", null, true, [], {}]',
        " \ufeff[1]",
        "[1] [2]",
        "[1,,2]",
        "[1, 2",
        "[]",
        "[ ,1]",
        '{"a": [1]}',
        "[1e400, NaN]",
    ],
)
def test_array_chunks_give_what_json_loads_gives_or_refuse(text: str) -> None:
    for chunk_chars in (1, 2, 100):
        try:
            got = [v for chunk in array_chunks(text, chunk_chars=chunk_chars) for v in chunk]
        except NotChunked:
            got = None
        try:
            expected = json.loads(text.removeprefix("\ufeff"))
        except ValueError:
            expected = None
        if not isinstance(expected, list) or not expected:
            expected = None  # no array, or nothing to gain: left to the streamed freeze
        assert repr(got) == repr(expected)


@pytest.mark.parametrize(
    ("options", "template"),
    [
        ({"id": "${item.name}"}, "true"),
        ({"filter": "n > 1"}, "true"),
        ({"max_items": 2}, "true"),
        ({"offset": 1}, "true"),
        ({"json_path": "$.items"}, "true"),
        ({}, "echo ${item.name}"),
    ],
)
def test_other_freezes_are_left_to_the_streamed_one(
    tmp_path: Path, options: dict[str, Any], template: str
) -> None:
    records = [{"name": f"r{i}", "n": i} for i in range(5)]
    document: Any = {"items": records} if "json_path" in options else records
    (tmp_path / "items.json").write_text(json.dumps(document))
    workflow = write_workflow(tmp_path, template, **options)
    assert frozen(tmp_path, workflow) == listed(tmp_path, workflow)


def test_rows_sqlite_would_write_differently_are_refused() -> None:
    # Given values whose JSON text SQLite rewrites (a big integer, -0.0, NaN)
    conn = sqlite3.connect(":memory:", isolation_level=None)
    create_schema(conn)
    for values in ([2**64], [-0.0], [float("nan")], ["\ud800"]):
        conn.execute("BEGIN")
        # When the chunked insert writes them, Then it refuses (the caller rolls back)
        with pytest.raises((NotBulkError, UnicodeEncodeError)):
            insert_item_chunks(conn, [values])
        conn.execute("ROLLBACK")
    # and what it accepts is what insert_items writes, the count trigger included
    values = [{"a": "é\n"}, [1, 2.5], "s", 3, None, False]
    conn.execute("BEGIN")
    fast = insert_item_chunks(conn, [values[:2], values[2:]])
    rows = conn.execute("SELECT idx, item_id, data, status FROM items ORDER BY idx").fetchall()
    counts = conn.execute("SELECT status, n FROM item_counts WHERE n > 0").fetchall()
    conn.execute("ROLLBACK")
    conn.execute("BEGIN")
    slow = insert_items(conn, ((str(i), v) for i, v in enumerate(values)))
    assert fast == slow
    assert (
        rows == conn.execute("SELECT idx, item_id, data, status FROM items ORDER BY idx").fetchall()
    )
    assert counts == conn.execute("SELECT status, n FROM item_counts WHERE n > 0").fetchall()
    conn.execute("ROLLBACK")


def test_the_digest_hashed_in_its_own_thread_is_the_whole_documents() -> None:
    from mapwise.items.chunked import HashedChunks
    from mapwise.items.source import input_digest

    values = [{"n": i, "z": "a,b]", "a": [i, {"y": 1, "b": 2}]} for i in range(20_000)]
    text = json.dumps(values)
    chunks = HashedChunks(text)
    seen = [value for chunk in chunks for value in chunk]
    assert seen == values and chunks.count == len(values)
    assert chunks.digest() == input_digest(values)


def test_an_error_while_hashing_comes_out_of_the_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    from mapwise.items import chunked

    def refuse(value: Any) -> str:
        raise ValueError("cannot hash this")

    monkeypatch.setattr(chunked, "canonical_text", refuse)
    chunks = chunked.HashedChunks(json.dumps(list(range(100_000))))
    assert sum(len(chunk) for chunk in chunks) == 100_000  # never blocks on the hasher
    with pytest.raises(ValueError, match="cannot hash this"):
        chunks.digest()
