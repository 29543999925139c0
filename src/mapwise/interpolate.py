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
    ${env.NAME}              the workflow env (expanded), else the process environment; empty
                             when set in neither (``mapwise.envexpand``)
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

This module is the one to import. The placeholder grammar and how a placeholder resolves
live in ``mapwise.placeholders``, which the shell binder builds on as well; so the binder
needs nothing from here, and this module imports it at load time.
"""

from __future__ import annotations

from typing import Any

from mapwise.fields import MISSING, get_path, parse_path
from mapwise.interpolate_shell import BoundShell, bind_shell_script
from mapwise.placeholders import (
    MAP_VARIABLES,
    Placeholder,
    Scope,
    find_placeholders,
    format_value,
    is_item_path,
    resolve_placeholder,
    unresolved_text,
)

__all__ = [
    "MAP_VARIABLES",
    "BoundShell",
    "Placeholder",
    "Scope",
    "bind_shell",
    "find_placeholders",
    "format_value",
    "is_item_path",
    "missing_item_fields",
    "render_plain",
    "resolve_placeholder",
    "unresolved_text",
]


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

    See ``mapwise.interpolate_shell`` for the quoting contexts it handles. A script with
    no ``$`` holds no placeholder, so it is its own binding: no scan (a job of short
    commands binds its script once per attempt).
    """
    if "$" not in template:
        return BoundShell(script=template, env={})
    return bind_shell_script(template, scope)
