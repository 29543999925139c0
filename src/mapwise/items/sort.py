"""The ``map.sort_by`` clause: ``"filename ASC, location.row DESC NULLS LAST"``.

Comma-separated keys; each is a field path, then optionally ``ASC``/``DESC`` (also
``ASCENDING``/``DESCENDING``, any case; default ASC), then optionally ``NULLS FIRST`` or
``NULLS LAST`` (default LAST whatever the direction). A missing field counts as null.

The sort is stable and never raises. Values of different types are ordered by type:
booleans < numbers < strings < arrays < objects (DESC reverses this too); within a type
the natural order, with arrays and objects compared by their canonical JSON text.

:func:`compile_sort` sorts a list; :func:`compile_packed_sort` gives the same order for
many values, holding each one packed while it sorts.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from mapwise.fields import MISSING

from ._values import order_key
from .filter import Getter, field_getter

_DIRECTIONS: Final = {"ASC": False, "ASCENDING": False, "DESC": True, "DESCENDING": True}
_NULLS: Final = {"FIRST": True, "LAST": False}


class SortSyntaxError(ValueError):
    """A ``sort_by`` clause that cannot be parsed; the message names the bad key."""


@dataclass(frozen=True)
class SortKey:
    """One key of a sort clause."""

    path: str
    descending: bool = False
    nulls_first: bool = False


def parse_sort(expr: str) -> list[SortKey]:
    """Parse a sort clause into its keys; raise SortSyntaxError if malformed."""
    if not expr.strip():
        raise SortSyntaxError("sort_by is empty")
    keys = []
    for number, chunk in enumerate(expr.split(","), start=1):
        keys.append(_parse_key(chunk, number, expr))
    return keys


def _parse_key(chunk: str, number: int, expr: str) -> SortKey:
    """Parse ``path [ASC|DESC] [NULLS FIRST|LAST]``."""
    words = chunk.split()
    where = f"key {number} ({chunk.strip()!r}) of sort_by {expr!r}"
    if not words:
        raise SortSyntaxError(f"empty {where}")
    path, rest = words[0], [w.upper() for w in words[1:]]
    try:
        field_getter(path)
    except ValueError as exc:
        raise SortSyntaxError(f"{exc} in {where}") from exc
    descending = False
    if rest and rest[0] in _DIRECTIONS:
        descending = _DIRECTIONS[rest.pop(0)]
    nulls_first = False
    if rest and rest[0] == "NULLS":
        if len(rest) < 2 or rest[1] not in _NULLS:
            raise SortSyntaxError(f"NULLS must be followed by FIRST or LAST in {where}")
        nulls_first = _NULLS[rest[1]]
        rest = rest[2:]
    if rest:
        raise SortSyntaxError(
            f"unexpected {words[len(words) - len(rest)]!r} in {where}; "
            "expected ASC, DESC, NULLS FIRST or NULLS LAST"
        )
    return SortKey(path, descending, nulls_first)


KeyFunction = Callable[[Any], tuple[Any, ...]]


def _key_function(key: SortKey) -> KeyFunction:
    """A sort key for one pass of Python's stable sort.

    ``reverse=True`` is used for DESC, so the null rank is chosen to land nulls where
    asked after the reversal; all nulls compare equal to keep their order. The key is
    one flat tuple (its rank, then :func:`order_key`'s): a million of them are built
    at once.
    """
    get: Getter = field_getter(key.path)
    # Without reversal, rank 0 sorts first; with reversal, rank 1 does.
    null_rank = 0 if key.nulls_first != key.descending else 1
    value_rank = 1 - null_rank

    def sort_key(item: Any) -> tuple[Any, ...]:
        value = get(item)
        if value is MISSING or value is None:
            return (null_rank,)
        return (value_rank, *order_key(value))

    return sort_key


def _passes(expr: str) -> list[tuple[KeyFunction, bool]]:
    """The stable sorts a clause makes, least significant key first (each pass keeps
    the previous order on ties), with whether each is reversed."""
    return [(_key_function(key), key.descending) for key in reversed(parse_sort(expr))]


def compile_sort(expr: str) -> Callable[[list[Any]], list[Any]]:
    """Compile a sort clause into a function returning a new, sorted list."""
    passes = _passes(expr)

    def sort(items: list[Any]) -> list[Any]:
        result = list(items)
        for key_function, descending in passes:
            result.sort(key=key_function, reverse=descending)
        return result

    return sort


def compile_packed_sort(expr: str) -> Callable[[Iterable[Any]], Iterator[Any]]:
    """Compile a sort clause for many values: the order of :func:`compile_sort`.

    While it sorts, each value is held as ``marshal`` bytes (exact for JSON values, and
    a fraction of the objects' memory); the sorted values are unpacked one at a time.
    """
    passes = [(_unpacking(key_function), descending) for key_function, descending in _passes(expr)]

    def sort(values: Iterable[Any]) -> Iterator[Any]:
        packed = [marshal.dumps(value) for value in values]
        for key_function, descending in passes:
            packed.sort(key=key_function, reverse=descending)
        packed.reverse()  # popped from the end, each is freed once handed on
        while packed:
            yield marshal.loads(packed.pop())

    return sort


def _unpacking(key_function: KeyFunction) -> Callable[[bytes], tuple[Any, ...]]:
    def packed_key(data: bytes) -> tuple[Any, ...]:
        return key_function(marshal.loads(data))

    return packed_key
