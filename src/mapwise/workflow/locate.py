"""From YAML text to plain data, remembering the line of every key and list item.

Every message about a workflow names a line, but validation runs on plain dicts and
lists (after prodigy's spellings are normalised), whose paths differ from the file's.
So this module keeps two maps: ``SourceLines`` (a path in the *file* to its line) and
``Locator`` (a path in the *normalised* data to the file path it came from). A message
about ``map.agent_template[1].timeout`` can then point at
``map.agent_template.commands[1].timeout`` on the right line.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

Loc: TypeAlias = tuple[str | int, ...]

# `key: value` or `- key: value` on one line: where a colon in the value is the mistake
_KEY_VALUE_LINE: Final = re.compile(
    r"^\s*(?P<dash>-\s+)?(?P<key>[^\s:#'\"][^:#]*?):\s+(?P<value>.*)$"
)
_COLON_IN_VALUE: Final = "mapping values are not allowed here"
# The most values a workflow may hold once its YAML aliases are expanded: far above any
# real workflow, far below an "alias bomb" (9 levels of 9 aliases expand to 387 million).
MAX_EXPANDED_VALUES: Final = 100_000


@dataclass(eq=False)
class Problem(Exception):
    """A mistake found in a workflow: what is wrong, where in the file, and which key.

    Raised and collected inside the workflow package; the loader turns it into a
    ``WorkflowError`` carrying the file name. ``line`` wins over ``loc`` when set;
    ``column`` (1-based) only comes from the YAML parser.
    """

    message: str
    loc: Loc = ()
    key: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        return self.message


def dotted(loc: Loc) -> str:
    """``("map", "agent_template", 1, "timeout")`` -> ``map.agent_template[1].timeout``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


@dataclass
class SourceLines:
    """The 1-based line of each key and list item of the file, by its path in the file."""

    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest ancestor that is in the file."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return 1


@dataclass
class Locator:
    """Maps paths of the normalised data back to paths and lines of the file.

    The normaliser calls ``move(dst, src)`` whenever the value at file path ``src``
    lands at a different normalised path ``dst``; paths not moved map to themselves.
    """

    source: SourceLines
    moves: dict[Loc, Loc] = field(default_factory=dict)

    def move(self, dst: Loc, src: Loc) -> None:
        if dst != src:
            self.moves[dst] = src

    def to_source(self, loc: Loc) -> Loc:
        """The file path that the normalised path ``loc`` came from."""
        for end in range(len(loc), 0, -1):
            src = self.moves.get(loc[:end])
            if src is not None:
                return src + loc[end:]
        return loc

    def line_of(self, loc: Loc) -> int:
        """The file line of the normalised path ``loc``."""
        return self.source.line_of(self.to_source(loc))

    def problem(self, loc: Loc, message: str, *, key_loc: Loc | None = None) -> Problem:
        """A problem at normalised ``loc``, keyed by the file path of ``key_loc`` (or ``loc``)."""
        key = dotted(self.to_source(loc if key_loc is None else key_loc))
        source = self.to_source(loc)
        return Problem(message, source, key or None, self.source.line_of(source))


def parse_yaml(text: str) -> tuple[Any, SourceLines]:
    """Parse ``text`` into plain Python data and the lines of its keys.

    Raises ``Problem`` for a YAML syntax error (at the line YAML reports), a duplicate
    key, or a YAML tag mapwise does not understand.
    """
    yaml = YAML(typ="rt")
    yaml.Constructor = _AliasCheckingConstructor
    try:
        tree = yaml.load(text)
    except DuplicateKeyError as exc:
        raise _duplicate_key_problem(exc) from None
    except MarkedYAMLError as exc:
        raise _syntax_problem(exc, text) from None
    except YAMLError as exc:
        raise Problem(f"invalid YAML: {exc}", line=1) from None
    lines = SourceLines()
    start = _node_line(tree)
    if start is not None:
        lines.lines[()] = start
    return _plain(tree, (), lines), lines


class _AliasCheckingConstructor(RoundTripConstructor):
    """Refuses a recursive alias and an alias expansion past ``MAX_EXPANDED_VALUES``
    before anything is built: ruamel would silently turn a recursive alias into null,
    and ``_plain`` would expand an alias bomb into gigabytes."""

    def construct_document(self, node: Any) -> Any:
        _check_aliases(node)
        return super().construct_document(node)


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _node_problem(node: Node, message: str) -> Problem:
    mark = node.start_mark
    return Problem(message, line=mark.line + 1 if mark is not None else 1)


def _check_aliases(root: Node) -> None:
    """Count the values of the document as ``_plain`` would expand them, without
    expanding: each node's size is computed once (an iterative post-order walk)."""
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    pending: list[tuple[Node, bool]] = [(root, False)]
    while pending:
        node, finished = pending.pop()
        key = id(node)
        if finished:
            ancestors.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > MAX_EXPANDED_VALUES:
                raise _node_problem(
                    node,
                    f"YAML aliases expand to more than {MAX_EXPANDED_VALUES:,} values "
                    "(an alias bomb?); mapwise refuses to expand them: use fewer or "
                    "less nested aliases",
                )
            sizes[key] = size
        elif key in ancestors:
            name = f"*{node.anchor}" if getattr(node, "anchor", None) else "an alias"
            raise _node_problem(
                node,
                f"YAML alias {name} is used inside the value it names (a recursive alias): "
                "a value cannot contain itself",
            )
        elif key not in sizes:
            ancestors.add(key)
            pending.append((node, True))
            pending.extend((child, False) for child in _children(node))


def _syntax_problem(exc: MarkedYAMLError, text: str) -> Problem:
    """A YAML syntax error at the parser's line and column, with a hint for the two
    common causes: a tab in the indentation, and an unquoted value holding ``: ``."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    column = mark.column + 1 if mark is not None else None
    problem = exc.problem or exc.context or "invalid YAML"
    context = f" ({exc.context})" if exc.context and exc.problem else ""
    if "'\\t'" in problem:
        problem, context = "a tab character; YAML allows only spaces for indentation", ""
    elif problem == _COLON_IN_VALUE:
        context = f"; {_quote_hint(text, line)}"
    return Problem(f"YAML syntax error: {problem}{context}", line=line, column=column)


def _quote_hint(text: str, line: int) -> str:
    """How to quote the value on ``line`` whose ``: `` YAML read as a second key.

    A plain (unquoted) value ends where ``: `` starts a mapping, so ``shell: echo a: b``
    is two keys on one line. Quoting the whole value keeps it one string; the hint shows
    the line rewritten, which is easier to follow than the rule.
    """
    lines = text.splitlines()
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    match = _KEY_VALUE_LINE.match(source)
    if match is None:
        return "quote a value that holds ': ', in '...' or \"...\""
    value = re.sub(r"\s+#.*$", "", match.group("value")).rstrip()
    dash = "- " if match.group("dash") else ""
    return f"quote a value that holds ': ', as in: {dash}{match.group('key')}: {_quoted(value)}"


def _quoted(value: str) -> str:
    """``value`` as one YAML string: single quotes (no escapes), unless it holds one."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value and "\\" not in value:
        return f'"{value}"'
    return "'" + value.replace("'", "''") + "'"


def _duplicate_key_problem(exc: DuplicateKeyError) -> Problem:
    """A duplicate key: YAML would silently keep one of the values, so refuse it."""
    line = exc.problem_mark.line + 1 if exc.problem_mark is not None else 1
    detail = str(exc.problem or "duplicate key")
    key = detail.split('"')[1] if detail.count('"') >= 2 else "?"
    return Problem(f"duplicate key {key!r}: each key may appear only once in a mapping", line=line)


def _node_line(node: Any) -> int | None:
    lc = getattr(node, "lc", None)
    return None if lc is None or lc.line is None else int(lc.line) + 1


def _plain(node: Any, loc: Loc, lines: SourceLines) -> Any:
    """Convert a ruamel node to plain dicts, lists and scalars, recording lines."""
    if isinstance(node, CommentedMap):
        return _plain_map(node, loc, lines)
    if isinstance(node, CommentedSeq):
        return _plain_seq(node, loc, lines)
    if isinstance(node, TaggedScalar):
        message = f"YAML tag {node.tag.value} is not supported"
        raise Problem(message, loc, dotted(loc) or None, lines.line_of(loc))
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, datetime.date):
        return node.isoformat()
    return node


def _plain_map(node: CommentedMap, loc: Loc, lines: SourceLines) -> dict[Any, Any]:
    here = lines.line_of(loc)
    result: dict[Any, Any] = {}
    for key, value in node.items():
        plain_key = _plain_key(key, loc, lines)
        child = (*loc, plain_key)
        try:
            lines.lines[child] = int(node.lc.key(key)[0]) + 1
        except (KeyError, TypeError):  # a key merged in with ``<<:`` has no own position
            lines.lines[child] = here
        result[plain_key] = _plain(value, child, lines)
    return result


def _plain_key(key: Any, loc: Loc, lines: SourceLines) -> str:
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bool) or key is None or isinstance(key, int | float):
        # YAML reads `on:` or `1:` as non-strings; compare and report them as text.
        return "null" if key is None else str(key).lower() if isinstance(key, bool) else str(key)
    raise Problem("a mapping key must be plain text", loc, dotted(loc) or None, lines.line_of(loc))


def _plain_seq(node: CommentedSeq, loc: Loc, lines: SourceLines) -> list[Any]:
    here = lines.line_of(loc)
    result: list[Any] = []
    for index, value in enumerate(node):
        child = (*loc, index)
        try:
            lines.lines[child] = int(node.lc.item(index)[0]) + 1
        except (KeyError, TypeError, IndexError):
            lines.lines[child] = here
        result.append(_plain(value, child, lines))
    return result


class Problems(Exception):
    """Several problems found in one pass (for example, every pydantic error at once)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


def unknown_key(key: str, candidates: Iterable[str]) -> str:
    """``unknown key 'maxparallel' (did you mean 'max_parallel'?)``."""
    import difflib  # only for a misspelt key: its import is felt in every start-up

    close = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"


def describe(value: Any) -> str:
    """A value as the YAML author would name it, for ``got ...`` in messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return str(value)
