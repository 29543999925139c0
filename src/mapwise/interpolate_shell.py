"""Binding variables into a ``/bin/sh`` script so that their values stay data.

``bind_shell_script`` never pastes a value into the script (``${raw:...}`` aside). Each
value goes into an environment variable (``MAPWISE_V0``, ``MAPWISE_V1``, ...; a name the
workflow's own variables use is skipped) and each placeholder becomes a reference to it,
quoted for the context it sits in, which a small scanner tracks with a stack::

    unquoted, inside $(...) or `...`   "${MAPWISE_V0}"    (the context resets inside them,
                                                          also when they sit inside "...")
    inside "..."                       ${MAPWISE_V0}
    inside '...' (and $'...')          '"${MAPWISE_V0}"'  (close, insert, reopen)
    here-document, unquoted delimiter  ${MAPWISE_V0}      (expanded once, never re-parsed)
    inside $((...))                    ${MAPWISE_V0}      (the value must be an integer)

Because the script only ever holds references, a value cannot end a quote or start a
command, and a scanner mistake (shell syntax is large) can only garble text, not run it.

Choices worth knowing:

- A here-document with a quoted delimiter (``<<'EOF'``) is literal, so a reference in it
  would not expand. Rather than pasting the value in (where a line ``EOF`` in it would end
  the document, and ``<<-`` would strip its tabs), the binder rewrites such a document to
  the unquoted form and escapes ``\\``, ``$`` and ````` in its body, which keeps its text
  exactly and lets the reference expand. The delimiter must then be a plain word; for any
  other (``<<'E O F'``) with a placeholder inside, binding fails with InterpolationError.
- ``$'...'`` is not POSIX sh (dash has no such thing), so it is treated like ``'...'``.
- Inside ``$((...))`` a value is evaluated as arithmetic, and bash evaluates ``a[$(cmd)]``
  there; so a value used in arithmetic must be an integer or binding fails.
- A placeholder whose ``$`` is escaped (``\\${item.x}``, outside single quotes) is left
  as written, because the shell reads it as literal text. Placeholders in comments are
  left as written too, and are not resolved.
- A command that evaluates its own arguments as code (``eval``, ``sh -c "$1"``, bash's
  ``[[ $x -eq 1 ]]``) is code the workflow author chose to run on the value.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from mapwise.errors import InterpolationError
from mapwise.placeholders import (
    Placeholder,
    Scope,
    find_placeholders,
    resolve_placeholder,
    unresolved_text,
)

__all__ = ["BoundShell", "bind_shell_script"]

_VAR_PREFIX: Final = "MAPWISE_V"
_WORD_BREAK: Final = " \t\n;&|()<>"
_PLAIN_DELIMITER: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,:@%+=/-]*")
_INTEGER: Final = re.compile(r"\s*[+-]?[0-9]+\s*")
_HEREDOC_ESCAPES: Final = str.maketrans({"\\": "\\\\", "$": "\\$", "`": "\\`"})


class _Kind(StrEnum):
    """Where the scanner is in the script."""

    TOP = "top"  # unquoted script text
    CMDSUB = "cmdsub"  # inside $(...): unquoted again
    BACKTICK = "backtick"  # inside `...`: unquoted again
    ARITH = "arith"  # inside $((...))
    BRACE = "brace"  # inside a shell ${...} that is not ours: quoted as its surroundings
    SQUOTE = "squote"  # inside '...' or $'...'
    DQUOTE = "dquote"  # inside "..."
    HEREDOC = "heredoc"  # a here-document body with an unquoted delimiter


_COMMAND_KINDS: Final = frozenset({_Kind.TOP, _Kind.CMDSUB, _Kind.BACKTICK})


@dataclass
class _Frame:
    """One open context; ``depth`` counts open parentheses inside $(...) and $((...))."""

    kind: _Kind
    depth: int = 0


@dataclass(frozen=True)
class _HereDoc:
    """A here-document whose body starts after the next newline."""

    strip_tabs: bool  # <<- strips leading tabs from body lines
    delimiter: str  # the word after quote removal
    quoted: bool  # any quoting in the word: the body is literal
    word_chunk: int  # index of the delimiter word in the output, to rewrite it


@dataclass(frozen=True)
class BoundShell:
    """A ``shell:`` step ready to run: ``/bin/sh -c script`` with ``env`` added."""

    script: str  # the text to pass to /bin/sh -c
    env: dict[str, str]  # extra environment variables the script refers to


def bind_shell_script(template: str, scope: Scope) -> BoundShell:
    """Bind ``template`` (a /bin/sh script) to ``scope``: see the module docstring."""
    bindings = _Bindings(scope)
    scanner = _Scanner(template, bindings)
    scanner.scan(0, len(template), _Kind.TOP)
    return BoundShell(script="".join(scanner.out), env=dict(bindings.env))


class _Bindings:
    """Values resolved so far, each in its own environment variable."""

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self._by_name: dict[str, str] = {}
        self._taken = set(scope.env) | set(scope.captures)
        self.env: dict[str, str] = {}

    def variable(self, placeholder: Placeholder) -> str | None:
        """The variable holding the placeholder's value; None if it is left to the shell."""
        known = self._by_name.get(placeholder.name)
        if known is not None:
            return known
        value = resolve_placeholder(placeholder, self._scope)
        if value is None:
            return None
        _check_transportable(placeholder, value)
        var = self._fresh_name()
        self._by_name[placeholder.name] = var
        self.env[var] = value
        return var

    def raw_text(self, placeholder: Placeholder) -> str:
        """The text a ``${raw:...}`` placeholder pastes into the script."""
        value = resolve_placeholder(placeholder, self._scope)
        if value is None:
            return unresolved_text(placeholder)
        _check_transportable(placeholder, value)
        return value

    def _fresh_name(self) -> str:
        """The next ``MAPWISE_Vn`` that no workflow variable or capture uses."""
        index = len(self.env)
        while f"{_VAR_PREFIX}{index}" in self._taken:
            index += 1
        name = f"{_VAR_PREFIX}{index}"
        self._taken.add(name)
        return name


def _check_transportable(placeholder: Placeholder, value: str) -> None:
    """The environment and argv carry bytes with no NUL: reject what cannot arrive."""
    if "\0" in value:
        raise InterpolationError(
            f"{placeholder.text}: the value contains a NUL byte, which no command can receive"
        )
    try:
        os.fsencode(value)
    except UnicodeEncodeError as exc:
        raise InterpolationError(
            f"{placeholder.text}: the value cannot be encoded for a command ({exc.reason}: "
            f"{value[exc.start : exc.end]!r})"
        ) from None


class _Scanner:
    """Walks a script once, copying it to ``out`` with placeholders replaced."""

    def __init__(self, template: str, bindings: _Bindings) -> None:
        self._t = template
        self._placeholders = find_placeholders(template)
        self._at = {p.start: p for p in self._placeholders}
        self._bindings = bindings
        self.out: list[str] = []

    def scan(self, start: int, end: int, base: _Kind) -> None:
        """Copy ``template[start:end]``, which begins in context ``base``."""
        stack = [_Frame(base)]
        pending: list[_HereDoc] = []
        pos = start
        while pos < end:
            pos = self._step(pos, end, stack, pending)

    def _emit(self, start: int, end: int) -> int:
        self.out.append(self._t[start:end])
        return end

    def _step(self, pos: int, end: int, stack: list[_Frame], pending: list[_HereDoc]) -> int:
        """Handle what starts at ``pos``; return where the next step starts."""
        placeholder = self._at.get(pos)
        if (
            placeholder is not None
            and placeholder.end <= end
            and self._emit_placeholder(placeholder, stack)
        ):
            return placeholder.end
        kind = stack[-1].kind
        if kind is _Kind.SQUOTE:
            return self._in_squote(pos, stack)
        if kind in (_Kind.DQUOTE, _Kind.HEREDOC):
            return self._in_dquote(pos, end, stack)
        if kind is _Kind.BRACE:
            return self._in_brace(pos, end, stack)
        if kind is _Kind.ARITH:
            return self._in_arith(pos, end, stack)
        return self._in_command(pos, end, stack, pending)

    # --- placeholders ---------------------------------------------------------------

    def _emit_placeholder(self, placeholder: Placeholder, stack: list[_Frame]) -> bool:
        """Write the reference for ``placeholder``; False if it is left to the shell."""
        if placeholder.raw:
            self.out.append(self._bindings.raw_text(placeholder))
            return True
        var = self._bindings.variable(placeholder)
        if var is None:
            return False
        kind = _effective_kind(stack)
        if kind in _COMMAND_KINDS:
            self.out.append(f'"${{{var}}}"')
        elif kind is _Kind.SQUOTE:
            self.out.append(f"'\"${{{var}}}\"'")
        else:
            if kind is _Kind.ARITH:
                _check_integer(placeholder, self._bindings.env[var])
            self.out.append(f"${{{var}}}")
        return True

    # --- contexts -------------------------------------------------------------------

    def _in_squote(self, pos: int, stack: list[_Frame]) -> int:
        char = self._t[pos]
        if char == "'":
            stack.pop()
        elif char == "`" and _innermost_command(stack) is _Kind.BACKTICK:
            _close_backtick(stack)
        return self._emit(pos, pos + 1)

    def _in_dquote(self, pos: int, end: int, stack: list[_Frame]) -> int:
        if stack[-1].kind is _Kind.DQUOTE and self._t[pos] == '"':
            stack.pop()
            return self._emit(pos, pos + 1)
        return self._expansion(pos, end, stack)

    def _in_brace(self, pos: int, end: int, stack: list[_Frame]) -> int:
        char = self._t[pos]
        if char == "}":
            stack.pop()
            return self._emit(pos, pos + 1)
        if char == '"':
            stack.append(_Frame(_Kind.DQUOTE))
            return self._emit(pos, pos + 1)
        if char == "'" and _effective_kind(stack) in _COMMAND_KINDS:
            stack.append(_Frame(_Kind.SQUOTE))
            return self._emit(pos, pos + 1)
        return self._expansion(pos, end, stack)

    def _in_arith(self, pos: int, end: int, stack: list[_Frame]) -> int:
        frame = stack[-1]
        if self._t[pos] == "(":
            frame.depth += 1
        elif self._t[pos] == ")":
            if frame.depth == 0 and self._t.startswith("))", pos, end):
                stack.pop()
                return self._emit(pos, pos + 2)
            frame.depth = max(0, frame.depth - 1)
        else:
            return self._expansion(pos, end, stack)
        return self._emit(pos, pos + 1)

    def _in_command(self, pos: int, end: int, stack: list[_Frame], pending: list[_HereDoc]) -> int:
        """Unquoted text: the top level, or inside $(...) or `...`."""
        t, char = self._t, self._t[pos]
        if char in "'\"" or t.startswith("$'", pos, end):
            stack.append(_Frame(_Kind.DQUOTE if char == '"' else _Kind.SQUOTE))
            return self._emit(pos, pos + (2 if char == "$" else 1))
        if char == "#" and (pos == 0 or t[pos - 1] in _WORD_BREAK):
            newline = t.find("\n", pos, end)
            return self._emit(pos, end if newline < 0 else newline)
        if char in "()" and stack[-1].kind is _Kind.CMDSUB:
            return self._paren(pos, stack)
        if t.startswith("<<", pos, end):
            return self._heredoc_operator(pos, end, pending)
        if char == "\n" and pending:
            self._emit(pos, pos + 1)
            return self._heredoc_bodies(pos + 1, end, pending)
        return self._expansion(pos, end, stack)

    def _paren(self, pos: int, stack: list[_Frame]) -> int:
        """A parenthesis inside $(...): nest, or close the substitution."""
        frame = stack[-1]
        if self._t[pos] == "(":
            frame.depth += 1
        elif frame.depth:
            frame.depth -= 1
        else:
            stack.pop()
        return self._emit(pos, pos + 1)

    def _expansion(self, pos: int, end: int, stack: list[_Frame]) -> int:
        """Escapes and what opens a new context where the shell expands ``$`` and `` ` ``."""
        t, char = self._t, self._t[pos]
        if char == "\\":
            return self._emit(pos, min(pos + 2, end))
        if char == "`":
            if _innermost_command(stack) is _Kind.BACKTICK:
                _close_backtick(stack)
            else:
                stack.append(_Frame(_Kind.BACKTICK))
            return self._emit(pos, pos + 1)
        for opener, kind in (("$((", _Kind.ARITH), ("$(", _Kind.CMDSUB), ("${", _Kind.BRACE)):
            if t.startswith(opener, pos, end):
                stack.append(_Frame(kind))
                return self._emit(pos, pos + len(opener))
        return self._emit(pos, pos + 1)

    # --- here-documents -------------------------------------------------------------

    def _heredoc_operator(self, pos: int, end: int, pending: list[_HereDoc]) -> int:
        """``<<WORD`` or ``<<-WORD``: note the document; its body follows the newline."""
        t = self._t
        if t.startswith("<<<", pos, end):  # a bash here-string, no body
            return self._emit(pos, pos + 3)
        strip_tabs = t.startswith("<<-", pos, end)
        word_start = pos + (3 if strip_tabs else 2)
        while word_start < end and t[word_start] in " \t":
            word_start += 1
        self._emit(pos, word_start)
        word_end, delimiter, quoted = _read_word(t, word_start, end)
        if word_end > word_start:
            pending.append(_HereDoc(strip_tabs, delimiter, quoted, len(self.out)))
        return self._emit(word_start, word_end)

    def _heredoc_bodies(self, pos: int, end: int, pending: list[_HereDoc]) -> int:
        """Copy the bodies of the pending documents, in order, from ``pos``."""
        for doc in pending:
            body_end, after = _find_delimiter_line(self._t, pos, end, doc)
            if doc.quoted:
                self._quoted_body(doc, pos, body_end)
            else:
                self.scan(pos, body_end, _Kind.HEREDOC)
            pos = self._emit(body_end, after)
        pending.clear()
        return pos

    def _quoted_body(self, doc: _HereDoc, start: int, end: int) -> None:
        """A literal body: pasted as is, or rewritten to expand references (docstring)."""
        inside = [p for p in self._placeholders if start <= p.start and p.end <= end]
        pieces: list[tuple[str, bool]] = []  # (text, is a reference)
        pos = start
        for placeholder in inside:
            pieces.append((self._t[pos : placeholder.start], False))
            var = None if placeholder.raw else self._bindings.variable(placeholder)
            if var is not None:
                _require_plain_delimiter(placeholder, doc)
                pieces.append((f"${{{var}}}", True))
            elif placeholder.raw:
                pieces.append((self._bindings.raw_text(placeholder), False))
            else:
                pieces.append((placeholder.text, False))
            pos = placeholder.end
        pieces.append((self._t[pos:end], False))
        if not any(is_ref for _, is_ref in pieces):
            self.out.append("".join(text for text, _ in pieces))
            return
        self.out[doc.word_chunk] = doc.delimiter
        for text, is_ref in pieces:
            self.out.append(text if is_ref else text.translate(_HEREDOC_ESCAPES))


def _effective_kind(stack: list[_Frame]) -> _Kind:
    """The context that decides quoting: a shell ``${...}`` takes its surroundings'."""
    for frame in reversed(stack):
        if frame.kind is not _Kind.BRACE:
            return frame.kind
    return _Kind.TOP


def _innermost_command(stack: list[_Frame]) -> _Kind:
    """The innermost frame that is a command list (or a here-document body)."""
    for frame in reversed(stack):
        if frame.kind in _COMMAND_KINDS or frame.kind is _Kind.HEREDOC:
            return frame.kind
    return _Kind.TOP


def _close_backtick(stack: list[_Frame]) -> None:
    """A backtick ends the innermost `...` whatever opened inside it (POSIX scans text)."""
    while stack[-1].kind is not _Kind.BACKTICK:
        stack.pop()
    stack.pop()


def _check_integer(placeholder: Placeholder, value: str) -> None:
    """A value inside $((...)) is evaluated; only an integer is safe there."""
    if not _INTEGER.fullmatch(value):
        raise InterpolationError(
            f"{placeholder.text} is used inside $((...)) and must be an integer, got {value!r}"
        )


def _require_plain_delimiter(placeholder: Placeholder, doc: _HereDoc) -> None:
    """Rewriting a quoted here-document needs a delimiter that is a plain word."""
    if not _PLAIN_DELIMITER.fullmatch(doc.delimiter):
        raise InterpolationError(
            f"{placeholder.text} is inside a here-document whose delimiter "
            f"{doc.delimiter!r} is not a plain word; use one such as <<'EOF'"
        )


def _read_word(t: str, pos: int, end: int) -> tuple[int, str, bool]:
    """Read a here-document delimiter word: (its end, the word unquoted, was it quoted)."""
    chars: list[str] = []
    quoted = False
    while pos < end and t[pos] not in _WORD_BREAK:
        char = t[pos]
        if char == "\\" and pos + 1 < end:
            quoted = True
            chars.append(t[pos + 1])
            pos += 2
        elif char == "'":
            quoted = True
            close = t.find("'", pos + 1, end)
            close = end if close < 0 else close
            chars.append(t[pos + 1 : close])
            pos = close + 1
        elif char == '"':
            quoted = True
            pos = _read_double_quoted(t, pos + 1, end, chars)
        else:
            chars.append(char)
            pos += 1
    return min(pos, end), "".join(chars), quoted


def _read_double_quoted(t: str, pos: int, end: int, chars: list[str]) -> int:
    """Append the text of a "..." word part to ``chars``; return the index after it."""
    while pos < end and t[pos] != '"':
        if t[pos] == "\\" and pos + 1 < end and t[pos + 1] in '$`"\\\n':
            chars.append(t[pos + 1])
            pos += 2
        else:
            chars.append(t[pos])
            pos += 1
    return pos + 1


def _find_delimiter_line(t: str, pos: int, end: int, doc: _HereDoc) -> tuple[int, int]:
    """Where the body from ``pos`` ends, and where the text after its delimiter line starts."""
    line_start = pos
    while line_start < end:
        newline = t.find("\n", line_start, end)
        line_end = end if newline < 0 else newline
        line = t[line_start:line_end]
        if (line.lstrip("\t") if doc.strip_tabs else line) == doc.delimiter:
            return line_start, end if newline < 0 else newline + 1
        if newline < 0:
            break
        line_start = newline + 1
    return end, end
