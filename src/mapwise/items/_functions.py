"""The functions a filter may call: ``is_null(f)``, ``contains(f, 'x')``, ``length(f)``, ...

Each is built once at compile time from its compiled arguments and returns a getter
(item -> value). Predicates return ``True``/``False``; ``length`` returns a number, or
``MISSING`` for a value without a length, so that any comparison with it is false.
None of them raises on any JSON item.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from mapwise.fields import MISSING

from ._values import is_number, json_equal

Getter = Callable[[Any], Any]
# A compiled argument: its getter, whether it is a literal, and the literal's value.
Arg = tuple[Getter, bool, Any]


@dataclass(frozen=True)
class FunctionSpec:
    """How many arguments a function takes, and how to build it from them."""

    arities: tuple[int, ...]
    build: Callable[[list[Arg]], Getter]


def _unary(test: Callable[[Any], bool]) -> Callable[[list[Arg]], Getter]:
    """A one-argument predicate; ``test`` sees the value or ``MISSING``."""

    def build(args: list[Arg]) -> Getter:
        get = args[0][0]
        return lambda item: test(get(item))

    return build


def _binary(test: Callable[[Any, Any], bool]) -> Callable[[list[Arg]], Getter]:
    """A two-argument predicate that is false if either argument is missing."""

    def build(args: list[Arg]) -> Getter:
        get_a, get_b = args[0][0], args[1][0]

        def run(item: Any) -> bool:
            a, b = get_a(item), get_b(item)
            if a is MISSING or b is MISSING:
                return False
            return test(a, b)

        return run

    return build


def _contains(haystack: Any, needle: Any) -> bool:
    """Substring for strings, membership for arrays."""
    if isinstance(haystack, str):
        return isinstance(needle, str) and needle in haystack
    if isinstance(haystack, list):
        return any(json_equal(element, needle) for element in haystack)
    return False


def _strings(test: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    return lambda a, b: isinstance(a, str) and isinstance(b, str) and test(a, b)


def _length_of(value: Any) -> Any:
    if isinstance(value, str | list | dict):
        return len(value)
    return MISSING


def _build_length(args: list[Arg]) -> Getter:
    """``length(f)`` is a number; prodigy's ``length(f, n)`` is ``length(f) == n``."""
    get = args[0][0]
    if len(args) == 1:
        return lambda item: _length_of(get(item))
    get_n = args[1][0]

    def equals(item: Any) -> bool:
        size, n = _length_of(get(item)), get_n(item)
        return size is not MISSING and is_number(n) and size == n

    return equals


def _build_matches(args: list[Arg]) -> Getter:
    """``matches(f, 'regex')`` is ``re.search``; a literal pattern is checked at compile time."""
    get, (get_pattern, is_literal, literal) = args[0][0], args[1]
    if is_literal:
        if not isinstance(literal, str):
            raise ValueError("the pattern must be a string")
        try:
            compiled = re.compile(literal)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        return lambda item: _search(compiled, get(item))

    def run(item: Any) -> bool:
        pattern = get_pattern(item)
        if not isinstance(pattern, str):
            return False
        try:
            return _search(re.compile(pattern), get(item))
        except re.error:
            return False

    return run


def _search(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.search(value) is not None


def _is_empty(value: Any) -> bool:
    return value is MISSING or value is None or value in ("", [], {})


FUNCTIONS: Final[dict[str, FunctionSpec]] = {
    "is_null": FunctionSpec((1,), _unary(lambda v: v is MISSING or v is None)),
    "is_not_null": FunctionSpec((1,), _unary(lambda v: v is not MISSING and v is not None)),
    "is_empty": FunctionSpec((1,), _unary(_is_empty)),
    "is_number": FunctionSpec((1,), _unary(is_number)),
    "is_string": FunctionSpec((1,), _unary(lambda v: isinstance(v, str))),
    "is_bool": FunctionSpec((1,), _unary(lambda v: isinstance(v, bool))),
    "is_array": FunctionSpec((1,), _unary(lambda v: isinstance(v, list))),
    "is_object": FunctionSpec((1,), _unary(lambda v: isinstance(v, dict))),
    "contains": FunctionSpec((2,), _binary(_contains)),
    "starts_with": FunctionSpec((2,), _binary(_strings(str.startswith))),
    "ends_with": FunctionSpec((2,), _binary(_strings(str.endswith))),
    "matches": FunctionSpec((2,), _build_matches),
    "length": FunctionSpec((1, 2), _build_length),
}
