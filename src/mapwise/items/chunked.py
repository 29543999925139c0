"""The elements of a JSON array document, parsed by ``json.loads`` a chunk at a time.

:mod:`mapwise.items.source` parses an array one element at a time, with a Python loop
around the decoder: about 3 µs an element, twice (a million items took six of the
freeze's twelve seconds). Parsing the whole document at once is C speed but holds every
value (hundreds of megabytes for a million objects). So :func:`array_chunks` cuts the
array's text at commas a few hundred kilobytes apart and hands each piece, wrapped in
brackets, to ``json.loads``.

A cut is only right at a comma that separates two elements of the array itself, and
the text alone does not say which commas those are (a string or a nested value holds
commas too). The parse does: the piece starts where an element starts, so ``json.loads``
reads it exactly as it reads that stretch of the whole document, and it succeeds only if
the comma ends a top-level element. Cut inside a string, the closing bracket added to
the piece becomes part of that unterminated string; cut inside a nested value, the
piece's brackets do not balance; a comma cannot fall inside a number or a literal.
Either failure just moves the cut to a later comma, a few times at most: then
:class:`NotChunked` says to use the value-at-a-time parser, which also reports what is
wrong with a text that is not a JSON array at all.

The values are those ``json.loads(text)`` gives, in the same order.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
from collections.abc import Iterator
from typing import Any, Final

from .source import canonical_text

CHUNK_CHARS: Final = 256 * 1024  # text parsed per json.loads call: about 17,000 small objects
MAX_MISSED_CUTS: Final = 16  # commas tried after a cut that was not between elements
# a comma between two objects, the usual array of records: the likeliest cut
_BETWEEN_OBJECTS: Final = re.compile(r"\}[ \t\n\r]*,")
_START: Final = re.compile(r"\ufeff?[ \t\n\r]*\[")


class HashedChunks:
    """:func:`array_chunks` of ``text``, hashed into :func:`~mapwise.items.input_digest`
    as they pass (the digest of the list the whole document is), and counted.

    The hashing runs in a thread of its own, a chunk behind: its sorted-key text is
    Python's work, and the caller spends most of a chunk's time in SQLite, which lets
    the interpreter lock go. Chunks are hashed in the order they were handed out; an
    error of the hashing comes out of :meth:`digest`.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._hash = hashlib.sha256(b"[")
        self._queue: queue.Queue[list[Any] | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.count = 0  # values handed out so far

    def __iter__(self) -> Iterator[list[Any]]:
        self._thread = threading.Thread(target=self._hash_all, name="mapwise-digest", daemon=True)
        self._thread.start()
        try:
            for values in array_chunks(self._text):
                self.count += len(values)
                self._queue.put(values)
                yield values
        finally:
            self._queue.put(None)

    def _hash_all(self) -> None:
        separator = b""
        while (values := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: the iterator must never block on a full queue
            try:
                self._hash.update(separator + canonical_text(values)[1:-1].encode())
            except BaseException as error:  # handed to digest()
                self._error = error
            separator = b","

    def digest(self) -> str:
        """The input digest, once every chunk has been handed out."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        final = self._hash.copy()
        final.update(b"]")
        return final.hexdigest()


class NotChunked(ValueError):
    """The text is not a JSON array that this module can cut: parse it another way."""


def array_chunks(text: str, *, chunk_chars: int = CHUNK_CHARS) -> Iterator[list[Any]]:
    """The elements of the JSON array that is the whole of ``text`` (a leading BOM and
    whitespace around it allowed), in non-empty lists of consecutive elements.

    Raises NotChunked, when it gets there, for a text that is no such array (or that
    it cannot cut), and nothing else: values already handed out are then to be dropped.
    An empty array raises NotChunked too (there is nothing to gain).
    """
    start = _START.match(text)
    if start is None:
        raise NotChunked("not a JSON array")
    begin = start.end()  # the first element's first character (or whitespace before it)
    while True:
        cut, piece = _next_piece(text, begin, chunk_chars)
        if cut < 0:
            yield _parse_last(text, begin)
            return
        yield piece
        begin = cut + 1


def _next_piece(text: str, begin: int, chunk_chars: int) -> tuple[int, list[Any]]:
    """The elements from ``begin`` to a comma about ``chunk_chars`` later that ends one,
    and that comma's index; (-1, []) if the rest of the text is short enough to parse
    whole."""
    target = begin + chunk_chars
    if target >= len(text):
        return -1, []
    found = _BETWEEN_OBJECTS.search(text, target)
    cut = found.end() - 1 if found is not None else text.find(",", target)
    for _ in range(MAX_MISSED_CUTS):
        if cut < 0:
            return -1, []
        try:
            piece: list[Any] = json.loads("[" + text[begin:cut] + "]")
        except ValueError:  # the comma is inside a string or a nested value
            cut = text.find(",", cut + 1)
            continue
        if not piece:  # "[ ," is no array
            raise NotChunked("expecting a value")
        return cut, piece
    raise NotChunked("no cut found between elements")


def _parse_last(text: str, begin: int) -> list[Any]:
    """The elements from ``begin`` to the end of the array, which must end the text."""
    try:
        piece: list[Any] = json.loads("[" + text[begin:])
    except ValueError as exc:  # not JSON, or more than the array (json.loads's Extra data)
        raise NotChunked(str(exc)) from exc
    if not piece:
        raise NotChunked("an empty array")
    return piece
