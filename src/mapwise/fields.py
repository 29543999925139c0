"""Field paths into JSON values: ``a.b``, ``xs[0]``, ``a.xs[1].c``.

Shared by the filter, ``sort_by``, ``distinct``, item id templates and ``${item.*}``
interpolation, so that a path means the same thing everywhere.
"""

from __future__ import annotations

import re
from typing import Any, Final

_TOKEN: Final = re.compile(r"\[(-?\d+)\]|\.?([^.\[\]]+)")


class _Missing:
    """Marker for a path that does not exist in a value (distinct from JSON null)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


def parse_path(path: str) -> tuple[str | int, ...]:
    """Split ``a.b[0].c`` into ``("a", "b", 0, "c")``; raise ValueError if malformed."""
    parts: list[str | int] = []
    pos = 0
    if not path:
        raise ValueError("empty field path")
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"malformed field path {path!r} at position {pos}")
        index, name = match.groups()
        if index is not None:
            parts.append(int(index))
        else:
            if match.group(0).startswith(".") and pos == 0:
                raise ValueError(f"malformed field path {path!r}")
            parts.append(name)
        pos = match.end()
    return tuple(parts)


def get_path(value: Any, parts: tuple[str | int, ...]) -> Any:
    """Follow ``parts`` into ``value``; return ``MISSING`` where the path does not exist."""
    current = value
    for part in parts:
        if isinstance(part, int):
            if not isinstance(current, list) or not -len(current) <= part < len(current):
                return MISSING
            current = current[part]
        else:
            if not isinstance(current, dict) or part not in current:
                return MISSING
            current = current[part]
    return current
