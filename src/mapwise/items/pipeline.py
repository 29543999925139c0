"""From parsed input to the frozen item list: json_path, filter, sort_by, distinct,
offset, max_items, then ids (the order prodigy documents).

Pure: no I/O. Reading the input is :mod:`mapwise.items.input`'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from mapwise.errors import InputError
from mapwise.fields import MISSING

from ._values import canonical_json
from .filter import compile_filter, field_getter
from .sort import compile_sort

_MAX_LISTED: Final = 10


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
    if filter is not None:
        predicate = compile_filter(filter)
        values = [value for value in values if predicate(value)]
    if sort_by is not None:
        values = compile_sort(sort_by)(values)
    if distinct is not None:
        values = keep_distinct(values, distinct)
    values = values[offset:]
    if max_items is not None:
        values = values[:max_items]
    return assign_ids(values, make_id)


def extract(data: Any, json_path: str | None) -> list[Any]:
    """Select the items: by ``json_path``, else the input array, else the one value.

    A json_path that names a single node (``$.items``) holding an array gives that
    array's elements, as users of prodigy expect; ``$.items[*]`` gives the same.
    """
    if json_path is None:
        return list(data) if isinstance(data, list) else [data]
    import jsonpath  # only here: its import costs a short job a tenth of its start-up

    try:
        query = jsonpath.compile(json_path)
        matches = query.findall(data)
    except jsonpath.JSONPathError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"json_path {json_path!r} is invalid: {reason}") from exc
    if not matches and data not in ([], {}):
        raise InputError(
            f"json_path {json_path!r} matched nothing; the input is {describe_value(data)}"
        )
    singular = getattr(query, "singular_query", None)
    if len(matches) == 1 and isinstance(matches[0], list) and callable(singular) and singular():
        return list(matches[0])
    return list(matches)


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


def keep_distinct(values: list[Any], path: str) -> list[Any]:
    """Keep the first item per value of the field at ``path`` (missing is one value)."""
    try:
        get = field_getter(path)
    except ValueError as exc:
        raise InputError(f"distinct: {exc}") from exc
    seen: set[str | None] = set()
    kept = []
    for value in values:
        field = get(value)
        key = None if field is MISSING else canonical_json(field)
        if key not in seen:
            seen.add(key)
            kept.append(value)
    return kept


def assign_ids(values: list[Any], make_id: Callable[[Any, int], str] | None) -> list[Item]:
    """Give each value its id and position; ids must be non-empty and unique."""
    items = [
        Item(position, make_id(value, position) if make_id else str(position), value)
        for position, value in enumerate(values)
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
