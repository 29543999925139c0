"""Writing the frozen item list: rows streamed into the ``items`` table.

A million items go through here at the freeze, so nothing holds them all: each (id,
value) is serialised as it comes, hashed into the items digest, and inserted a few
hundred rows per statement (one statement per row costs four times as much, mostly in
the ``item_counts`` trigger's per-statement journal).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, Final

from mapwise.errors import InputError

ROWS_PER_STATEMENT: Final = 300  # 900 parameters: under SQLite's oldest limit (999)


class DuplicateItemIdError(InputError):
    """Two items of a list being frozen have the same id; nothing of it was stored."""


def _compact_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``, made once.

    ``json.dumps`` builds an encoder on every call, which is most of its cost for a
    small value; the C encoder is built here once (without the circular-reference
    check, which parsed JSON never needs), and ``JSONEncoder.encode`` is the fallback.
    """
    plain = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return plain.encode
    try:
        # the arguments JSONEncoder.iterencode passes: markers (None: no circular check),
        # default, string encoder, indent, separators, sort_keys, skipkeys, allow_nan
        chunks = make(None, plain.default, json.encoder.encode_basestring, None, ":", ",",
                      False, False, True)  # fmt: skip
        probe: Any = {"a": [1, 2.5, None, True, "é\n", float("nan")], "b": {}}

        def encode(value: Any) -> str:
            return "".join(chunks(value, 0))

        if encode(probe) == plain.encode(probe):
            return encode
    except (TypeError, ValueError):  # another Python's signature
        pass
    return plain.encode


compact_json: Final = _compact_encoder()


class ItemsDigest:
    """The frozen item list's identity: a SHA-256 over its (item id, item JSON) pairs.

    Fed one pair at a time, so the freeze hashes a million items as it inserts them;
    :func:`items_digest` feeds it a whole list, which is how verify checks the rows it
    reads back. Each pair is hashed as ``id NUL json LF`` (UTF-8): jobs store this digest,
    so the layout must never change.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, item_id: str, data: str) -> None:
        self._hash.update(f"{item_id}\0{data}\n".encode())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def items_digest(pairs: Iterable[tuple[str, str]]) -> str:
    """The :class:`ItemsDigest` of (item id, item JSON text) ``pairs``, in order."""
    digest = ItemsDigest()
    for item_id, data in pairs:
        digest.add(item_id, data)
    return digest.hexdigest()


def insert_items(conn: sqlite3.Connection, items: Iterable[tuple[str, Any]]) -> tuple[int, str]:
    """Insert ``items`` (id, JSON value) as pending rows from index 0, in the caller's
    transaction; return their count and items digest.

    Raises DuplicateItemIdError if two ids are equal; the caller's transaction must then
    be rolled back.
    """
    digest = ItemsDigest()
    full = _insert_sql(ROWS_PER_STATEMENT)
    rows = iter(items)
    count = 0
    while True:
        params: list[Any] = []
        for item_id, value in itertools.islice(rows, ROWS_PER_STATEMENT):
            data = compact_json(value)
            digest.add(item_id, data)
            params += (count, item_id, data)
            count += 1
        batch = len(params) // 3
        if batch:
            try:
                conn.execute(full if batch == ROWS_PER_STATEMENT else _insert_sql(batch), params)
            except sqlite3.IntegrityError as exc:
                if "item_id" not in str(exc):
                    raise
                raise DuplicateItemIdError(f"item ids must be unique ({exc})") from exc
        if batch < ROWS_PER_STATEMENT:
            return count, digest.hexdigest()


def _insert_sql(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, 'pending')"] * rows)
    return f"INSERT INTO items (idx, item_id, data, status) VALUES {values}"
