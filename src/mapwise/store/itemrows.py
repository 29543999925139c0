"""Writing the frozen item list: rows streamed into the ``items`` table.

A million items go through here at the freeze, so nothing holds them all: each (id,
value) is serialised as it comes, hashed into the items digest, and inserted a few
hundred rows per statement (one statement per row costs four times as much, mostly in
the ``item_counts`` trigger's per-statement journal).

:func:`insert_item_chunks` is the fast way for the usual list (ids are positions): a
list of values at a time is serialised by one ``json.dumps``, SQLite's ``json_each``
cuts it into rows, and one read of those rows, compared with the text, proves them the
rows :func:`insert_items` writes (or says to use it instead), and gives the digest's
text in one piece.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
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

    def add_laid_out(self, pairs: str) -> None:
        """Feed pairs already laid out as ``id NUL json LF`` each, one after the other."""
        self._hash.update(pairs.encode())

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


# -- a list of values at a time, written by SQLite ------------------------------------------

BULK_CACHE_KIB: Final = 8 * 1024  # SQLite's page cache while it writes: fewer spills to the WAL

# each element's JSON as json.dumps writes it: json_each gives an object's or array's text
# as it was (json.dumps's, compact), a string unquoted (json_quote puts its escapes
# back), a number as a number (the text of most; the read back catches the others)
_INSERT_ELEMENTS: Final = """
INSERT INTO items (idx, item_id, data, status)
SELECT ?1 + key, CAST(?1 + key AS TEXT),
       CASE type WHEN 'object' THEN value WHEN 'array' THEN value
                 WHEN 'text' THEN json_quote(value)
                 WHEN 'integer' THEN CAST(value AS TEXT) WHEN 'real' THEN CAST(value AS TEXT)
                 ELSE type END,
       'pending'
FROM json_each(?2)
"""
# the rows just written, in idx order (a range of the rowid): their JSON joined as
# json.dumps joins a list's, and the digest's layout of them
_READ_BACK: Final = """
SELECT COUNT(*), group_concat(data, ','), group_concat(item_id || char(0) || data || char(10), '')
FROM items WHERE idx >= ?1 AND idx < ?2
"""


class NotBulkError(Exception):
    """SQLite could not write a list's rows exactly as :func:`insert_items` writes them;
    the caller's transaction must be rolled back and the items inserted that way."""


def insert_item_chunks(conn: sqlite3.Connection, chunks: Iterable[list[Any]]) -> tuple[int, str]:
    """:func:`insert_items` of the values of ``chunks``, each list in turn, with ids
    their positions (``"0"``, ``"1"``, ...); in the caller's transaction.

    Each row is checked against what insert_items writes: its ``data`` is
    ``compact_json`` of its value, for the joined ``data`` of a list's rows, in idx order,
    must equal ``compact_json`` of the list without its brackets (every row's data is a
    JSON text, so the join cuts only one way). Raises NotBulkError at the first
    difference, or if SQLite cannot read the text (``NaN``, a lone surrogate).
    """
    digest = ItemsDigest()
    count = 0
    with _page_cache(conn, BULK_CACHE_KIB), _counted_at_the_end(conn) as counted:
        for values in chunks:
            size, text = len(values), compact_json(values)
            try:
                conn.execute(_INSERT_ELEMENTS, (count, text))
            except (sqlite3.IntegrityError, UnicodeEncodeError) as exc:
                raise NotBulkError(str(exc)) from exc
            except sqlite3.OperationalError as exc:
                if "JSON" not in str(exc):
                    raise
                raise NotBulkError(str(exc)) from exc
            end = count + size
            rows, joined, pairs = conn.execute(_READ_BACK, (count, end)).fetchone()
            if rows != size or joined != text[1:-1]:
                raise NotBulkError(f"the rows from index {count} differ from their values")
            digest.add_laid_out(pairs)
            count = end
        counted(count)
    return count, digest.hexdigest()


_COUNT_TRIGGER: Final = "items_counted_insert"


@contextlib.contextmanager
def _counted_at_the_end(conn: sqlite3.Connection) -> Iterator[Callable[[int], None]]:
    """The ``item_counts`` trigger of inserts, dropped while the block runs (a third of
    the rows' cost) and made again from its own SQL after it, in the caller's
    transaction; the block calls the function it is given with the rows it inserted,
    all pending, to count them at once. If the block raises, the caller's rollback
    brings the trigger back."""
    found = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (_COUNT_TRIGGER,)
    ).fetchone()
    if found is None:  # nothing counts the rows: nothing to do
        yield lambda count: None
        return
    conn.execute(f"DROP TRIGGER {_COUNT_TRIGGER}")
    inserted = 0

    def counted(count: int) -> None:
        nonlocal inserted
        inserted = count

    yield counted
    conn.execute(found[0])
    if inserted:
        conn.execute(
            "INSERT INTO item_counts (status, n, seconds) VALUES ('pending', ?, 0)"
            " ON CONFLICT (status) DO UPDATE SET n = n + excluded.n",
            (inserted,),
        )


@contextlib.contextmanager
def _page_cache(conn: sqlite3.Connection, kib: int) -> Iterator[None]:
    """SQLite's page cache at ``kib`` KiB at least while the block runs."""
    (before,) = conn.execute("PRAGMA cache_size").fetchone()
    wanted = -kib
    if before < 0 and before <= wanted:
        yield
        return
    conn.execute(f"PRAGMA cache_size = {wanted}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA cache_size = {before}")
