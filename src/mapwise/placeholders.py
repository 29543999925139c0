"""Placeholders in templates and what they resolve to: what every way of substituting shares.

``mapwise.interpolate`` documents the placeholders and is the module to import; this one
holds the parts that both of its ways of substituting (plain text, and the shell binder
in ``mapwise.interpolate_shell``) build on, so that neither imports the other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from mapwise.errors import InterpolationError
from mapwise.fields import MISSING, get_path, parse_path

__all__ = [
    "MAP_VARIABLES",
    "Placeholder",
    "Scope",
    "find_placeholders",
    "format_value",
    "is_item_path",
    "resolve_placeholder",
    "unresolved_text",
]

_PLACEHOLDER: Final = re.compile(
    r"\$\$"  # the shell's process id; consumed so that `$$NAME` is not `$NAME`
    r"|\$\{(?P<raw>raw:)?"
    r"(?P<braced>[A-Za-z_][A-Za-z0-9_]*(?:\.[^.\[\]{}\n]+|\[-?[0-9]+\])*)\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)

# Names that only the braced form reaches: `$item` in a shell loop is the shell's.
_BUILTINS: Final = frozenset({"item", "item_id", "item_index", "attempt", "job_id"})
_ITEM_SCOPED: Final = ("item_id", "item_index", "attempt")
MAP_VARIABLES: Final = ("total", "successful", "failed", "results", "results_file")


@dataclass(frozen=True)
class Scope:
    """What variables a command can see."""

    job_id: str
    env: Mapping[str, str] = field(default_factory=dict)  # workflow env: ${NAME} and $NAME
    captures: Mapping[str, str] = field(default_factory=dict)  # captured step outputs
    item: Any = MISSING  # mapwise.fields.MISSING outside the map phase
    item_id: str | None = None
    item_index: int | None = None
    attempt: int | None = None
    map_vars: Mapping[str, str] | None = None  # reduce only: total, successful, ...


@dataclass(frozen=True)
class Placeholder:
    """One placeholder as written in a template, with its position."""

    text: str  # as written, e.g. "${item.a.b}"
    name: str  # "item.a.b", "item", "item_id", "map.total", "NAME", ...
    start: int
    end: int
    raw: bool  # written ${raw:...}: pasted into a shell script unprotected


def find_placeholders(template: str) -> list[Placeholder]:
    """Every placeholder in ``template``, in order, whether or not it will resolve."""
    found: list[Placeholder] = []
    for match in _PLACEHOLDER.finditer(template):
        braced, bare = match.group("braced"), match.group("bare")
        if braced is not None:
            name, raw = braced, match.group("raw") is not None
        elif bare is not None and bare not in _BUILTINS:
            name, raw = bare, False
        else:
            continue
        found.append(Placeholder(match.group(0), name, match.start(), match.end(), raw))
    return found


def format_value(value: Any) -> str:
    """A JSON value as text: a string as itself, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def is_item_path(name: str) -> bool:
    """Whether a placeholder name reads the item (``item``, ``item.a``, ``item[0]``)."""
    return name == "item" or name.startswith(("item.", "item["))


def resolve_placeholder(placeholder: Placeholder, scope: Scope) -> str | None:
    """The text of ``placeholder`` in ``scope``, or None to leave it for the shell.

    Raises InterpolationError for a variable that must resolve and does not.
    """
    name = placeholder.name
    if is_item_path(name):
        return _resolve_item(placeholder, scope)
    if name in _ITEM_SCOPED:
        return _resolve_item_scoped(placeholder, scope)
    if name == "job_id":
        return scope.job_id
    if name.startswith("map."):
        return _resolve_map(placeholder, scope)
    if name.startswith("env.") and _ENV_NAME.fullmatch(name[len("env.") :]):
        return _resolve_env(name[len("env.") :], scope)
    if name in scope.captures:
        return scope.captures[name]
    field = _capture_field(placeholder, scope)
    if field is not None:
        return field
    if name in scope.env:
        return scope.env[name]
    return None


def _capture_field(placeholder: Placeholder, scope: Scope) -> str | None:
    """``${meta.a}``, ``${meta.items[0].x}``: a field of a capture that holds JSON
    (``capture_format: json`` or ``lines``); None when no capture starts the name."""
    name = placeholder.name
    heads = [c for c in scope.captures if name.startswith((f"{c}.", f"{c}["))]
    if not heads:
        return None
    head = max(heads, key=len)  # ``a.b`` before ``a`` when both are captures
    try:
        value = json.loads(scope.captures[head])
    except ValueError:
        raise InterpolationError(
            f"{placeholder.text}: capture {head!r} is not JSON (give its step "
            "capture_format: json to read its fields)"
        ) from None
    path = name[len(head) :].removeprefix(".")
    try:
        found = get_path(value, parse_path(path))
    except ValueError as exc:
        raise InterpolationError(f"{placeholder.text}: {exc}") from None
    if found is MISSING:
        raise InterpolationError(f"{placeholder.text}: capture {head!r} has no field {path!r}")
    return format_value(found)


_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _resolve_env(key: str, scope: Scope) -> str:
    """``${env.NAME}``: the workflow env first, then the process environment; a name set
    in neither is empty, as in a shell (validate warns about it)."""
    import os

    if key in scope.env:
        return scope.env[key]
    return os.environ.get(key, "")


def _where(scope: Scope) -> str:
    """`` for item 'x'`` when the item is known, for error messages."""
    if scope.item_id is not None:
        return f" for item {scope.item_id!r}"
    if scope.item_index is not None:
        return f" for item #{scope.item_index}"
    return ""


def _resolve_item(placeholder: Placeholder, scope: Scope) -> str:
    """``${item}`` or a field of it; error if there is no item or no such field."""
    if scope.item is MISSING:
        raise InterpolationError(
            f"{placeholder.text}: there is no item here (item variables exist only in the "
            "map phase)"
        )
    path = placeholder.name[len("item") :].removeprefix(".")
    if not path:
        return format_value(scope.item)
    try:
        value = get_path(scope.item, parse_path(path))
    except ValueError as exc:
        raise InterpolationError(f"{placeholder.text}: {exc}") from None
    if value is MISSING:
        raise InterpolationError(f"{placeholder.text}: field {path!r} not found{_where(scope)}")
    return format_value(value)


def _resolve_item_scoped(placeholder: Placeholder, scope: Scope) -> str:
    """``${item_id}``, ``${item_index}``, ``${attempt}``: the map phase only."""
    value: str | int | None = getattr(scope, placeholder.name)
    if value is None:
        raise InterpolationError(
            f"{placeholder.text}: there is no item here (item variables exist only in the "
            "map phase)"
        )
    return str(value)


def _resolve_map(placeholder: Placeholder, scope: Scope) -> str:
    """``${map.*}``: the reduce phase only, and only the known names."""
    key = placeholder.name.removeprefix("map.")
    if key not in MAP_VARIABLES:
        known = ", ".join(f"map.{k}" for k in MAP_VARIABLES)
        raise InterpolationError(f"{placeholder.text}: unknown map variable (known: {known})")
    if scope.map_vars is None:
        raise InterpolationError(f"{placeholder.text}: map results exist only in the reduce phase")
    if key not in scope.map_vars:
        raise InterpolationError(f"{placeholder.text}: not available in this reduce phase")
    return scope.map_vars[key]


def unresolved_text(placeholder: Placeholder) -> str:
    """What an unresolved placeholder stays as: as written, minus a ``raw:`` prefix."""
    if placeholder.raw:
        return "${" + placeholder.name + "}"
    return placeholder.text
