"""The values ``map.json_path`` selects from the input, parsed one at a time when it can.

A million items parsed into Python objects at once take hundreds of megabytes. So when
json_path selects the elements of an array (no json_path, ``$[*]``, ``$.items``,
``$.a.b[*]``, ...), :func:`open_source` parses them one at a time, by the rules of
:func:`mapwise.items.input.parse_input`: the input is a JSON array, an object leading to
one, JSON lines or plain lines. The text is read more than once: first to check that it
parses and to compute the input's digest, last to hand the values on. Any other input
is parsed whole, as before.

Either way the digest is :func:`input_digest` of the parsed input: the digest a job
has always recorded (``input_sha256``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, Final

from .input import InputText, json_line, nonblank_lines, parse_input, scan_json
from .pipeline import extract, member_names

_DIGEST_CHUNK: Final = 1000  # values serialised per json.dumps call while hashing
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, as json.loads skips it
_SPACE: Final = frozenset(" \t\n\r")


def input_digest(data: Any) -> str:
    """A hash of the input as read (its canonical JSON), to tell whether it changed since."""
    return hashlib.sha256(canonical_text(data).encode()).hexdigest()


def canonical_text(value: Any) -> str:
    """``value`` as input_digest writes it: sorted keys, compact, unescaped."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Source:
    """The values json_path selects, in order, and the input's digest."""

    values: Iterator[Any]
    digest: str  # input_digest of the whole parsed input


def open_source(raw: InputText, json_path: str | None) -> Source:
    """:func:`extract` over :func:`parse_input` with :func:`input_digest`, lazily if it can.

    Raises what parse_input, extract and input_digest raise (an input the digest cannot
    encode raises UnicodeEncodeError, though at another position); the values themselves,
    once returned, never raise.
    """
    names = [] if json_path is None else member_names(json_path)
    if names is not None:
        text = raw.text.removeprefix("\ufeff")
        lazy = _document_source(text, names)
        if lazy is None and not names and not raw.json_file:
            lazy = _text_source(text, json_path)
        if lazy is not None:
            return lazy
    return _whole(parse_input(raw), json_path)


def _whole(data: Any, json_path: str | None) -> Source:
    """The source of an input parsed whole; each value is let go once handed on."""
    digest = input_digest(data)
    values = extract(data, json_path)
    values.reverse()
    return Source(_popped(values), digest)


def _popped(values: list[Any]) -> Iterator[Any]:
    while values:
        yield values.pop()


def _text_source(text: str, json_path: str | None) -> Source:
    """:func:`parse_input_text`'s rules for a text that is not one JSON array: a whole
    document, else JSON lines, else plain lines (these two lazily)."""
    if not text.strip():
        return _whole([], json_path)
    try:
        document = json.loads(text)
    except ValueError:
        pass
    else:
        return _whole(document, json_path)
    digest = _digest(map(json_line, nonblank_lines(text)))
    if digest is not None:
        return Source(map(json_line, nonblank_lines(text)), digest)
    digest = _digest(nonblank_lines(text))
    assert digest is not None  # plain lines always parse
    return Source(nonblank_lines(text), digest)


# -- one JSON document: an array, or objects leading to one ---------------------------


@dataclass(frozen=True)
class _Level:
    """An object json_path goes through, as the first reading of the document found it."""

    members: dict[str, Any]  # its other members, parsed
    name: str  # the member json_path goes on through
    inner: _Level | int  # the next object along, or the index of the array's ``[``


def _document_source(text: str, names: list[str]) -> Source | None:
    """The elements of the array ``names`` lead to in ``text``, if it is one JSON document
    and they lead to an array (a non-empty one if there are names: json_path's errors
    about an empty one are left to extract); else None."""
    start = _skip_space(text, 0)
    if not names:  # the document is the array: one pass checks and hashes it
        if not text.startswith("[", start):
            return None
        digest = _digest(_document_elements(text, start))
        return None if digest is None else Source(_document_elements(text, start), digest)
    try:
        target, end = _walk(text, start, names)
    except ValueError:
        return None
    if target is None or _skip_space(text, end) != len(text):
        return None
    hashed = hashlib.sha256()
    _hash_level(hashed, text, target)
    while isinstance(target, _Level):
        target = target.inner
    return Source(_array_elements(text, target), hashed.hexdigest())


def _walk(text: str, index: int, names: list[str]) -> tuple[_Level | int | None, int]:
    """Read the JSON value at ``index`` (all of it, as json.loads would, a value at a
    time), following ``names`` through its objects; return where they lead (a _Level, or
    the index of a non-empty array's ``[``, or None if elsewhere) and the index after
    the value. ValueError where the text is not JSON."""
    if not names or not text.startswith("{", index):
        if names or not text.startswith("[", index):
            return None, _scan(text, index)[1]
        elements, count = _array_elements(text, index), 0
        while True:
            try:
                next(elements)
            except StopIteration as done:
                return (index if count else None), done.value
            count += 1
    members: dict[str, Any] = {}
    inner: _Level | int | None = None
    position = _skip_space(text, index + 1)
    if text.startswith("}", position):
        return None, position + 1
    while True:
        if not text.startswith('"', position):
            raise ValueError(f"expecting a member name at {position}")
        key, position = _scan(text, position)
        position = _skip_space(text, position)
        if not text.startswith(":", position):
            raise ValueError(f"expecting ':' at {position}")
        position = _skip_space(text, position + 1)
        if key == names[0]:  # json.loads keeps a repeated name's last value: so does this
            inner, position = _walk(text, position, names[1:])
        else:
            members[key], position = _scan(text, position)
        position = _skip_space(text, position)
        if text.startswith(",", position):
            position = _skip_space(text, position + 1)
        elif text.startswith("}", position):
            position += 1
            break
        else:
            raise ValueError(f"expecting ',' or '}}' at {position}")
    return (None if inner is None else _Level(members, names[0], inner)), position


def _hash_level(hashed: Any, text: str, target: _Level | int) -> None:
    """Feed ``hashed`` input_digest's text of the value at ``target``: sorted members, as
    ``json.dumps(sort_keys=True)`` writes them, and the array a chunk at a time."""
    if isinstance(target, int):
        _hash_list(hashed, _array_elements(text, target))
        return
    hashed.update(b"{")
    for number, key in enumerate(sorted([*target.members, target.name])):
        hashed.update(f"{',' if number else ''}{canonical_text(key)}:".encode())
        if key == target.name:
            _hash_level(hashed, text, target.inner)
        else:
            hashed.update(canonical_text(target.members[key]).encode())
    hashed.update(b"}")


def _document_elements(text: str, start: int) -> Iterator[Any]:
    """The elements of the array at ``start``, then ValueError unless only whitespace follows."""
    end = yield from _array_elements(text, start)
    if _skip_space(text, end) != len(text):
        raise ValueError(f"extra data at {end}")


def _array_elements(text: str, start: int) -> Generator[Any, None, int]:
    """The elements of the array whose ``[`` is at ``start``, each parsed as json.loads
    would; returns the index after its ``]``. ValueError, when reached, where the text is
    not such an array."""
    scan, end = scan_json, len(text)
    index = _skip_space(text, start + 1)
    if text.startswith("]", index):
        return index + 1
    while True:
        try:
            value, index = scan(text, index)
        except StopIteration:
            raise ValueError(f"expecting a value at {index}") from None
        yield value
        if index < end and text[index] in _SPACE:
            index = _skip_space(text, index)
        if text.startswith(",", index):
            index += 1
            if index < end and text[index] in _SPACE:
                index = _skip_space(text, index)
        elif text.startswith("]", index):
            return index + 1
        else:
            raise ValueError(f"expecting ',' or ']' at {index}")


def _scan(text: str, index: int) -> tuple[Any, int]:
    """The JSON value at ``index`` and the index after it; ValueError if none is there."""
    try:
        return scan_json(text, index)
    except StopIteration:
        raise ValueError(f"expecting a value at {index}") from None


def _skip_space(text: str, index: int) -> int:
    """The index of the first character at or after ``index`` that is not whitespace."""
    match = _WHITESPACE.match(text, index)
    return match.end() if match else index


# -- the digest --------------------------------------------------------------------------


def _digest(values: Iterator[Any]) -> str | None:
    """input_digest of the list of ``values``, or None if reading them raises ValueError
    (the text does not parse that way)."""
    hashed = hashlib.sha256()
    return hashed.hexdigest() if _hash_list(hashed, values) else None


def _hash_list(hashed: Any, values: Iterator[Any]) -> bool:
    """Feed ``hashed`` input_digest's text of the list of ``values``, serialised a chunk
    at a time; False if reading them raises ValueError."""
    hashed.update(b"[")
    separator = b""
    chunk: list[Any] = []
    while True:
        try:
            value = next(values)
        except StopIteration:
            break
        except ValueError:
            return False
        chunk.append(value)
        if len(chunk) == _DIGEST_CHUNK:
            hashed.update(separator + canonical_text(chunk)[1:-1].encode())
            separator, chunk = b",", []
    if chunk:
        hashed.update(separator + canonical_text(chunk)[1:-1].encode())
    hashed.update(b"]")
    return True
