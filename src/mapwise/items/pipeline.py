"""From parsed input to the frozen item list: json_path, filter, sort_by, distinct,
offset, max_items, then ids (the order prodigy documents).

Pure: no I/O. Reading the input is :mod:`mapwise.items.input`'s job. The steps after
json_path are lazy (:func:`iter_selected`, :func:`iter_ids`), so that a million items
can flow through them without being held at once; :func:`select_items` is the same
pipeline collected into a checked list.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from mapwise.errors import InputError
from mapwise.fields import MISSING

from ._values import canonical_json
from .filter import compile_filter, field_getter
from .sort import compile_packed_sort

_MAX_LISTED: Final = 10
_MEMBER_PATH: Final = re.compile(r"\$(?P<names>(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?P<all>\[\*\])?")


@dataclass(frozen=True)
class Item:
    """One work item of the frozen list."""

    index: int  # 0-based position in the frozen (final) list
    item_id: str
    value: Any  # the JSON value


def select_items(
    data: Any,
    *,
    json_path: str | None,
    filter: str | None,
    sort_by: str | None,
    distinct: str | None,
    offset: int,
    max_items: int | None,
    make_id: Callable[[Any, int], str] | None = None,
) -> list[Item]:
    """Run the item pipeline over ``data`` and return the frozen items with their ids.

    Raises InputError for a json_path that is invalid or matches nothing, a malformed
    ``distinct`` path, and empty or duplicate ids; FilterSyntaxError and SortSyntaxError
    propagate unchanged (the workflow loader checks them first).
    """
    if offset < 0 or (max_items is not None and max_items < 0):
        raise ValueError("offset and max_items must not be negative")
    values = extract(data, json_path)
    selected = iter_selected(
        values,
        filter=filter,
        sort_by=sort_by,
        distinct=distinct,
        offset=offset,
        max_items=max_items,
    )
    return assign_ids(list(selected), make_id)


def iter_selected(
    values: Iterable[Any],
    *,
    filter: str | None,
    sort_by: str | None,
    distinct: str | None,
    offset: int,
    max_items: int | None,
) -> Iterator[Any]:
    """filter, sort_by, distinct, offset and max_items over ``values``, lazily.

    Each clause is compiled here, in that order, so that its errors are raised before a
    value is read. Only sort_by holds every value at once, packed.
    """
    stream: Iterator[Any] = iter(values)
    if filter is not None:
        predicate = compile_filter(filter)
        stream = (value for value in stream if predicate(value))
    if sort_by is not None:
        stream = compile_packed_sort(sort_by)(stream)
    if distinct is not None:
        stream = distinct_by(distinct)(stream)
    stop = None if max_items is None else offset + max_items
    return itertools.islice(stream, offset, stop)


def extract(data: Any, json_path: str | None) -> list[Any]:
    """Select the items: by ``json_path``, else the input array, else the one value.

    A json_path that names a single node (``$.items``) holding an array gives that
    array's elements, as users of prodigy expect; ``$.items[*]`` gives the same.
    """
    if json_path is None:
        return list(data) if isinstance(data, list) else [data]
    simple = _member_path(data, json_path)
    if simple is not None:
        matches, singular = simple
    else:
        matches, singular = _find(data, json_path)
    if not matches and data not in ([], {}):
        raise InputError(
            f"json_path {json_path!r} matched nothing; the input is {describe_value(data)}"
        )
    if len(matches) == 1 and isinstance(matches[0], list) and singular:
        return list(matches[0])
    return list(matches)


def _find(data: Any, json_path: str) -> tuple[list[Any], bool]:
    """python-jsonpath's matches of ``json_path``, and whether it is a singular query."""
    import jsonpath  # only here: its import costs a short job a tenth of its start-up

    try:
        query = jsonpath.compile(json_path)
        matches = query.findall(data)
    except jsonpath.JSONPathError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"json_path {json_path!r} is invalid: {reason}") from exc
    singular = getattr(query, "singular_query", None)
    return matches, bool(callable(singular) and singular())


def member_names(json_path: str) -> list[str] | None:
    """The member names of ``$.a.b`` or ``$.a.b[*]`` (none for ``$`` and ``$[*]``), the
    usual json_paths; None for any other."""
    path = _MEMBER_PATH.fullmatch(json_path)
    return None if path is None else path["names"].split(".")[1:]


def _member_path(data: Any, json_path: str) -> tuple[list[Any], bool] | None:
    """:func:`_find` for the usual json_paths, ``$.a.b`` and ``$.a.b[*]``; None for others.

    python-jsonpath builds a match object per match (300 MB for a million); following
    the names gives the same values, in the same order, without them.
    """
    names = member_names(json_path)
    if names is None:
        return None
    singular = not json_path.endswith("[*]")
    node = data
    for name in names:
        if not isinstance(node, dict) or name not in node:
            return [], singular
        node = node[name]
    if singular:
        return [node], True
    if isinstance(node, list):
        return list(node), False
    if isinstance(node, dict):
        return list(node.values()), False
    return [], False


def describe_value(value: Any, *, depth: int = 0) -> str:
    """Say in a few words what a JSON value looks like, for error messages."""
    if isinstance(value, dict):
        if not value:
            return "an empty object"
        return f"an object with keys {_first_names([str(k) for k in value])}"
    if isinstance(value, list):
        if not value:
            return "an empty array"
        count = f"an array of {len(value)} value{'s' if len(value) != 1 else ''}"
        if depth > 0:
            return count
        return f"{count}, the first {describe_value(value[0], depth=depth + 1)}"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "null"


def _first_names(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def distinct_by(path: str) -> Callable[[Iterable[Any]], Iterator[Any]]:
    """A lazy :func:`keep_distinct`; InputError at once for a malformed ``path``."""
    try:
        get = field_getter(path)
    except ValueError as exc:
        raise InputError(f"distinct: {exc}") from exc

    def keep_first(values: Iterable[Any]) -> Iterator[Any]:
        seen: set[str | None] = set()
        for value in values:
            field = get(value)
            key = None if field is MISSING else canonical_json(field)
            if key not in seen:
                seen.add(key)
                yield value

    return keep_first


def iter_ids(
    values: Iterable[Any], make_id: Callable[[Any, int], str] | None
) -> Iterator[tuple[str, Any]]:
    """(id, value) for each value: ``make_id(value, position)``, else the position; unchecked."""
    if make_id is None:
        return ((str(position), value) for position, value in enumerate(values))
    return ((make_id(value, position), value) for position, value in enumerate(values))


def assign_ids(values: list[Any], make_id: Callable[[Any, int], str] | None) -> list[Item]:
    """Give each value its id and position; ids must be non-empty and unique."""
    items = [
        Item(position, item_id, value)
        for position, (item_id, value) in enumerate(iter_ids(values, make_id))
    ]
    empty = [item.index for item in items if not item.item_id]
    if empty:
        raise InputError(f"item ids must not be empty; empty at positions {_positions(empty)}")
    positions: dict[str, list[int]] = {}
    for item in items:
        positions.setdefault(item.item_id, []).append(item.index)
    duplicated = [(item_id, where) for item_id, where in positions.items() if len(where) > 1]
    if duplicated:
        listed = "; ".join(
            f"{item_id!r} at positions {_positions(where)}"
            for item_id, where in duplicated[:_MAX_LISTED]
        )
        more = len(duplicated) - _MAX_LISTED
        suffix = f"; and {more} more duplicated ids" if more > 0 else ""
        raise InputError(f"item ids must be unique; duplicated: {listed}{suffix}")
    return items


def _positions(indexes: list[int]) -> str:
    shown = ", ".join(str(i) for i in indexes[:_MAX_LISTED])
    more = len(indexes) - _MAX_LISTED
    return f"{shown} (and {more} more)" if more > 0 else shown
