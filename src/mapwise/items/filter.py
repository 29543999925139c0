"""The ``map.filter`` language: prodigy's item predicates, compiled once, run per item.

Grammar (lowest precedence first)::

    or_expr    := and_expr (("||" | "or") and_expr)*
    and_expr   := not_expr (("&&" | "and") not_expr)*
    not_expr   := ("!" | "not") not_expr | "(" or_expr ")" | comparison
    comparison := value [ op value | ["not"] "in" "[" literal ("," literal)* "]" ]
    op         := "==" | "=" | "!=" | ">" | ">=" | "<" | "<=" | "matches"
    value      := literal | field_path | name "(" value ("," value)* ")"
    literal    := number | 'string' | "string" | true | false | null

A value on its own is true only when it is JSON ``true`` (so a predicate function or a
boolean field can stand alone). ``and``/``or``/``not``/``in`` are accepted in any case,
as prodigy accepts ``AND``/``OR``.

Semantics, chosen so that a filter never raises on any item:

- a missing field makes every comparison false, ``!=`` and ``in`` included;
- ``==``/``!=`` compare JSON values (``1 == 1.0``, but ``true != 1``); for present values
  ``!=`` is the negation of ``==``, so ``"a" != 5`` is true;
- ``< <= > >=`` hold only between two numbers or two strings; anything else is false;
- ``matches`` (prodigy's regex operator: ``path matches '\\.rs$'``) holds when the
  pattern is found anywhere in a string value; a pattern that is no regular expression
  is refused when the filter is compiled;
- a leading ``item.`` is allowed (``item.score``, as prodigy's docs write it) when the
  item has no key ``item``; a bare ``item`` is the item itself (useful for string items).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from mapwise.fields import MISSING, get_path, parse_path

from ._functions import FUNCTIONS
from ._values import is_number, json_equal, truth

Getter = Callable[[Any], Any]
Predicate = Callable[[Any], bool]


class FilterSyntaxError(ValueError):
    """A filter expression that cannot be compiled; says what is wrong and at which column."""

    def __init__(self, detail: str, *, expr: str, column: int) -> None:
        self.detail = detail
        self.expr = expr
        self.column = column
        super().__init__(f"{detail} at column {column} in filter {expr!r}")


def field_getter(path: str) -> Getter:
    """Compile a field path into a getter returning the value or ``MISSING``.

    Shared by filter, sort and distinct so that ``item.x`` means the same everywhere.
    Raises ValueError for a malformed path.
    """
    parts = parse_path(path)
    if parts[0] != "item":
        return lambda value: get_path(value, parts)
    rest = parts[1:]

    def get(value: Any) -> Any:
        if isinstance(value, dict) and "item" in value:
            return get_path(value, parts)
        return get_path(value, rest)

    return get


# --------------------------------------------------------------------------- tokens

_TOKEN_RE: Final = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<path>[^\W\d][\w-]*(?:\.[\w-]+|\[-?\d+\])*)
  | (?P<op>==|!=|>=|<=|&&|\|\||[<>!=(),\[\]])
  | (?P<quote>['"])
    """,
    re.VERBOSE,
)
_WORD_OPS: Final = {"and": "&&", "or": "||", "not": "!", "in": "in"}
_KEYWORDS: Final = {"true": True, "false": False, "null": None}


@dataclass(frozen=True)
class _Token:
    kind: str  # "num" | "str" | "lit" | "path" | "op" | "eof"
    text: str
    value: Any
    column: int  # 1-based


def _tokenize(expr: str) -> list[_Token]:
    """Split ``expr`` into tokens; raise FilterSyntaxError on a character that fits none."""
    tokens: list[_Token] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN_RE.match(expr, pos)
        if match is None:
            raise FilterSyntaxError(
                f"unexpected character {expr[pos]!r}", expr=expr, column=pos + 1
            )
        kind = match.lastgroup or ""
        text = match.group(0)
        if kind == "quote":
            token, pos = _read_string(expr, pos)
            tokens.append(token)
            continue
        if kind != "ws":
            tokens.append(_classify(kind, text, pos + 1))
        pos = match.end()
    tokens.append(_Token("eof", "", None, len(expr) + 1))
    return tokens


def _classify(kind: str, text: str, column: int) -> _Token:
    """Turn a raw match into a token: numbers get their value, words become keywords."""
    if kind == "num":
        is_float = any(c in text for c in ".eE")
        return _Token("num", text, float(text) if is_float else int(text), column)
    if kind == "path":
        if text.lower() in _WORD_OPS:
            return _Token("op", _WORD_OPS[text.lower()], None, column)
        if text in _KEYWORDS:
            return _Token("lit", text, _KEYWORDS[text], column)
    return _Token(kind, text, None, column)


def _read_string(expr: str, start: int) -> tuple[_Token, int]:
    """Read a quoted string; ``\\`` escapes only the quote and itself (regex-friendly)."""
    quote = expr[start]
    chars: list[str] = []
    pos = start + 1
    while pos < len(expr):
        char = expr[pos]
        if char == "\\" and pos + 1 < len(expr) and expr[pos + 1] in (quote, "\\"):
            chars.append(expr[pos + 1])
            pos += 2
        elif char == quote:
            return _Token("str", expr[start : pos + 1], "".join(chars), start + 1), pos + 1
        else:
            chars.append(char)
            pos += 1
    raise FilterSyntaxError("unterminated string", expr=expr, column=start + 1)


# --------------------------------------------------------------------------- parser


@dataclass(frozen=True)
class _Operand:
    """A compiled value: how to get it from an item, and its constant if it is a literal."""

    get: Getter
    is_literal: bool = False
    literal: Any = None


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """Lift ``op`` to JSON values: it holds only between two numbers or two strings."""

    def compare(left: Any, right: Any) -> bool:
        if isinstance(left, str) and isinstance(right, str):
            return op(left, right)
        if is_number(left) and is_number(right):
            return op(left, right)
        return False

    return compare


_COMPARATORS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": json_equal,
    "=": json_equal,
    "!=": lambda left, right: not json_equal(left, right),
    ">": _ordered(operator.gt),
    ">=": _ordered(operator.ge),
    "<": _ordered(operator.lt),
    "<=": _ordered(operator.le),
    "matches": lambda left, right: (
        isinstance(left, str) and isinstance(right, str) and re.search(right, left) is not None
    ),
}


class _Parser:
    """Recursive descent over the token list, building closures as it goes."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.pos = 0

    # helpers ---------------------------------------------------------------
    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.peek()
        self.pos += 1
        return token

    def at_op(self, *texts: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.text in texts

    def error(self, detail: str, token: _Token | None = None) -> FilterSyntaxError:
        token = token or self.peek()
        return FilterSyntaxError(detail, expr=self.expr, column=token.column)

    def expect(self, text: str, what: str) -> _Token:
        if not self.at_op(text):
            raise self.error(f"expected {what}, found {_describe(self.peek())}")
        return self.advance()

    # grammar ---------------------------------------------------------------
    def parse(self) -> Predicate:
        if self.peek().kind == "eof":
            raise self.error("empty filter expression")
        predicate = self.or_expr()
        if self.peek().kind != "eof":
            raise self.error(f"expected '&&', '||' or the end, found {_describe(self.peek())}")
        return predicate

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.at_op("||"):
            self.advance()
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda item: any(part(item) for part in parts)

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.at_op("&&"):
            self.advance()
            parts.append(self.not_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda item: all(part(item) for part in parts)

    def not_expr(self) -> Predicate:
        if self.at_op("!"):
            self.advance()
            inner = self.not_expr()
            return lambda item: not inner(item)
        if self.at_op("("):
            self.advance()
            inner = self.or_expr()
            self.expect(")", "')'")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        left = self.value()
        token = self.peek()
        if token.kind == "op" and token.text in _COMPARATORS:
            self.advance()
            return _compare(left, _COMPARATORS[token.text], self.value())
        if token.kind == "path" and token.text.lower() == "matches":  # infix, not matches(...)
            self.advance()
            right = self.value()
            if right.is_literal:
                self.check_pattern(right.literal, token)
            return _compare(left, _COMPARATORS["matches"], right)
        if self.at_op("in") or (self.at_op("!") and self.peek(1).text == "in"):
            negate = self.advance().text == "!"
            if negate:
                self.advance()
            return _membership(left, self.literal_list(), negate=negate)
        get = left.get
        return lambda item: truth(get(item))

    def check_pattern(self, pattern: Any, token: _Token) -> None:
        """A ``matches`` pattern must be a string and a regular expression."""
        if not isinstance(pattern, str):
            raise self.error("'matches' needs a string pattern", token)
        try:
            re.compile(pattern)
        except re.error as exc:
            why = f"'matches': {pattern!r} is not a regular expression ({exc})"
            raise self.error(why, token) from None

    def literal_list(self) -> list[Any]:
        self.expect("[", "'[' after 'in'")
        values: list[Any] = []
        while not self.at_op("]"):
            token = self.advance()
            if token.kind not in ("num", "str", "lit"):
                raise self.error(f"expected a literal in the list, found {_describe(token)}", token)
            values.append(token.value)
            if not self.at_op("]"):
                self.expect(",", "',' or ']'")
        self.advance()
        return values

    def value(self) -> _Operand:
        token = self.advance()
        if token.kind in ("num", "str", "lit"):
            constant = token.value
            return _Operand(lambda _item: constant, is_literal=True, literal=constant)
        if token.kind == "path":
            if self.at_op("("):
                return self.call(token)
            return _Operand(self.field(token))
        raise self.error(
            f"expected a field, a literal or a function, found {_describe(token)}", token
        )

    def field(self, token: _Token) -> Getter:
        try:
            return field_getter(token.text)
        except ValueError as exc:
            raise self.error(str(exc), token) from exc

    def call(self, name: _Token) -> _Operand:
        spec = FUNCTIONS.get(name.text)
        if spec is None:
            known = ", ".join(sorted(FUNCTIONS))
            raise self.error(f"unknown function {name.text!r} (known: {known})", name)
        self.advance()  # "("
        args: list[_Operand] = []
        arg_tokens: list[_Token] = []
        while not self.at_op(")"):
            arg_tokens.append(self.peek())
            args.append(self.value())
            if not self.at_op(")"):
                self.expect(",", "',' or ')'")
        self.advance()
        if len(args) not in spec.arities:
            counts = " or ".join(str(n) for n in spec.arities)
            raise self.error(f"{name.text}() takes {counts} argument(s), got {len(args)}", name)
        try:
            fn = spec.build([(a.get, a.is_literal, a.literal) for a in args])
        except ValueError as exc:
            raise self.error(f"{name.text}(): {exc}", arg_tokens[-1]) from exc
        return _Operand(fn)


def _compare(left: _Operand, compare: Callable[[Any, Any], bool], right: _Operand) -> Predicate:
    """A comparison that is false whenever either side is missing."""
    get_left, get_right = left.get, right.get

    def predicate(item: Any) -> bool:
        a = get_left(item)
        b = get_right(item)
        if a is MISSING or b is MISSING:
            return False
        return compare(a, b)

    return predicate


def _membership(left: _Operand, values: list[Any], *, negate: bool) -> Predicate:
    """``x in [...]`` (or ``x not in [...]``); false for a missing ``x`` either way."""
    get = left.get

    def predicate(item: Any) -> bool:
        value = get(item)
        if value is MISSING:
            return False
        found = any(json_equal(value, candidate) for candidate in values)
        return found != negate

    return predicate


def _describe(token: _Token) -> str:
    return "the end of the expression" if token.kind == "eof" else repr(token.text)


def compile_filter(expr: str) -> Predicate:
    """Compile ``expr`` into a predicate over items; raise FilterSyntaxError if invalid."""
    try:
        return _Parser(expr).parse()
    except RecursionError:
        raise FilterSyntaxError("expression is nested too deeply", expr=expr, column=1) from None
