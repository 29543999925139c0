"""Finding JSON objects in an agent's output, whatever else the output holds.

The output may be one JSON object (``--output-format json``), one array of messages
(``json`` with ``--verbose``), one object per line (``stream-json``, Codex's ``--json``),
or anything at all: a crash's traceback, a truncated line, megabytes of noise, an array
nested a million deep. Nothing here raises for the output's sake.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

Match = Callable[[dict[str, Any]], bool]
_MAX_LINES = 100_000  # lines looked at from the end before giving up


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def objects(text: str) -> Iterator[dict[str, Any]]:
    """Every JSON object of the output in order: one per line, or an array's elements."""
    whole = text.strip()
    if whole[:1] in ("{", "[") and "\n" in whole:
        value = _loads(whole)  # a pretty-printed object or array
        if value is not None:
            yield from _members(value)
            return
    for line in text.splitlines():
        yield from _members_of_line(line)


def _members_of_line(line: str) -> Iterator[dict[str, Any]]:
    stripped = line.strip()
    if stripped[:1] in ("{", "["):
        yield from _members(_loads(stripped))


def _members(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
    elif isinstance(value, list):
        yield from (element for element in value if isinstance(element, dict))


def last_object(text: str, matches: Match) -> dict[str, Any] | None:
    """The last JSON object of the output that ``matches``, looking from the end."""
    whole = text.strip()
    if whole[:1] in ("{", "[") and "\n" in whole:
        found = _last(_members(_loads(whole)), matches)
        if found is not None:
            return found
    lines = text.splitlines()
    for line in reversed(lines[-_MAX_LINES:]):
        found = _last(_members_of_line(line), matches)
        if found is not None:
            return found
    return None


def _last(candidates: Iterator[dict[str, Any]], matches: Match) -> dict[str, Any] | None:
    found = None
    for candidate in candidates:
        if matches(candidate):
            found = candidate
    return found


def number(value: Any) -> float | None:
    """A JSON number as a float; anything else (a string, a bool, NaN) is None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None


def money(value: Any) -> float | None:
    """A cost in USD: a non-negative number, else None (never lowers a total)."""
    n = number(value)
    return n if n is not None and n >= 0 else None


def count(value: Any) -> int:
    """A token or turn count: a non-negative integer, else 0."""
    n = number(value)
    return int(n) if n is not None and n >= 0 else 0


def text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
