"""Variables in commands, and how their values reach a command without becoming code.

Placeholders (``find_placeholders``)::

    ${item}                  the item: a JSON string as itself, anything else as compact JSON
    ${item.a.b} ${item.xs[0]} ${item[1]}
                             a field of the item (``mapwise.fields`` paths); a string as
                             itself, numbers, true/false/null, objects and arrays as JSON text
    ${item_id} ${item_index} ${attempt}      the map phase only
    ${job_id}
    ${map.total} ${map.successful} ${map.failed} ${map.results} ${map.results_file}
                             the reduce phase only
    ${NAME} $NAME            a captured step output or a workflow ``env`` variable; when a
                             name is both, the capture wins (it is the more recent value)
    ${raw:...}               any braced placeholder, inserted with no protection (see below)

Item variables (``${item...}``, ``${item_id}``, ``${item_index}``, ``${attempt}``) where
there is no item, ``${map.*}`` where there are no map results, and an item field that does
not resolve raise ``InterpolationError`` naming the variable (and the item). A plain
``${NAME}`` or ``$NAME`` that is neither a capture nor a workflow variable is left as
written, for the shell (``${HOME}``). ``$$``, ``$1``, ``$(...)``, ``$((...))`` and shell
expansions such as ``${NAME:-default}`` or ``${#NAME}`` are never placeholders. The bare
form ``$NAME`` is only for captures and workflow variables: ``$item`` or ``$job_id`` stay
shell variables, so that ``for item in a b; do echo $item; done`` keeps working.

Two ways to substitute:

- ``render_plain``: plain text substitution, for text that no shell parses: a ``claude:``
  prompt (one argv element), ``write_file`` paths and content, item id templates.
- ``bind_shell`` (``mapwise.interpolate_shell``): for a ``shell:`` step. No value is ever
  pasted into the script: each value travels in an environment variable (``MAPWISE_V0``,
  ``MAPWISE_V1``, ...) and the placeholder becomes a reference to it quoted for where it
  sits (unquoted, ``'...'``, ``"..."``, a here-document, ``$(...)``). So whatever an item
  holds (``x'; rm -rf ~; '``, ``$(touch PWNED)``) the command sees its exact text as data.
  ``echo 'Processing ${item.id}'`` and ``echo "${item.name}"`` work as written.
  One consequence: a workflow variable used as ``$FILES`` is one word, not split by the
  shell; write ``${raw:FILES}`` to have it split.

The one explicit opt-out, for a trusted template: ``${raw:item.x}`` (``raw:`` before any
braced placeholder) pastes the value's text into the script as shell code, exactly as a
naive text substitution would. Use it only when the value is code you wrote yourself.
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
    "BoundShell",
    "Placeholder",
    "Scope",
    "bind_shell",
    "find_placeholders",
    "format_value",
    "missing_item_fields",
    "render_plain",
    "resolve_placeholder",
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


@dataclass(frozen=True)
class BoundShell:
    """A ``shell:`` step ready to run: ``/bin/sh -c script`` with ``env`` added."""

    script: str  # the text to pass to /bin/sh -c
    env: dict[str, str]  # extra environment variables the script refers to


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
    if name in scope.captures:
        return scope.captures[name]
    if name in scope.env:
        return scope.env[name]
    return None


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


def render_plain(template: str, scope: Scope) -> str:
    """Substitute every placeholder's text, for text no shell will parse."""
    parts: list[str] = []
    pos = 0
    for placeholder in find_placeholders(template):
        value = resolve_placeholder(placeholder, scope)
        parts.append(template[pos : placeholder.start])
        parts.append(unresolved_text(placeholder) if value is None else value)
        pos = placeholder.end
    parts.append(template[pos:])
    return "".join(parts)


def missing_item_fields(template: str, item: Any) -> list[str]:
    """The ``item...`` placeholder names of ``template`` that do not resolve in ``item``.

    Used to check every frozen item before the map phase starts. Names come back as
    written (``item.a.b``), each once, in order; a malformed path counts as missing.
    """
    missing: list[str] = []
    for placeholder in find_placeholders(template):
        name = placeholder.name
        if not is_item_path(name) or name in missing:
            continue
        path = name[len("item") :].removeprefix(".")
        if item is MISSING or (path and _field_missing(item, path)):
            missing.append(name)
    return missing


def _field_missing(item: Any, path: str) -> bool:
    """Whether ``path`` is malformed or absent in ``item``."""
    try:
        return get_path(item, parse_path(path)) is MISSING
    except ValueError:
        return True


def bind_shell(template: str, scope: Scope) -> BoundShell:
    """Bind ``template``, a /bin/sh script, so that no value can become code.

    See ``mapwise.interpolate_shell`` for the quoting contexts it handles.
    """
    # Imported here: interpolate_shell builds on this module.
    from mapwise.interpolate_shell import bind_shell_script

    return bind_shell_script(template, scope)
