"""open_source: the values json_path selects, parsed lazily, must be what parsing the
input whole gives (values, order, digest and errors), whatever the text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mapwise.items import InputText, input_digest, open_source, parse_input
from mapwise.items import source as source_module
from mapwise.items.input import json_line, nonblank_lines
from mapwise.items.pipeline import extract

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=6)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)
SPACE = st.sampled_from(["", " ", "\n", "\r\n", "\t", "  \n "])


def same(values: list[Any]) -> str:
    """A text equal exactly when the values are (types, order, NaN included)."""
    return json.dumps(values)


def outcome(run: Any) -> tuple[Any, ...]:
    try:
        return ("ok", *run())
    except UnicodeEncodeError:  # a lone surrogate: hashed in pieces, its position differs
        return ("error", UnicodeEncodeError)
    except Exception as exc:
        return ("error", type(exc), str(exc))


def lazily(raw: InputText, json_path: str | None) -> tuple[str, str]:
    source = open_source(raw, json_path)
    return same(list(source.values)), source.digest


def whole(raw: InputText, json_path: str | None) -> tuple[str, str]:
    data = parse_input(raw)
    digest = input_digest(data)
    return same(extract(data, json_path)), digest


@st.composite
def array_texts(draw: st.DrawFn) -> str:
    """A JSON array written with any whitespace between its tokens."""
    values = draw(st.lists(JSON_VALUES, max_size=6))
    parts = [draw(SPACE) + json.dumps(v, ensure_ascii=draw(st.booleans())) for v in values]
    inner = ",".join(part + draw(SPACE) for part in parts)
    return f"{draw(SPACE)}[{draw(SPACE)}{inner}]{draw(SPACE)}"


@st.composite
def line_texts(draw: st.DrawFn) -> str:
    """JSON lines, plain lines, or both, with blank lines and CRLF."""
    lines = draw(
        st.lists(
            st.one_of(
                JSON_VALUES.map(json.dumps),
                st.text(max_size=8).filter(lambda t: "\n" not in t),
                SPACE,
            ),
            max_size=6,
        )
    )
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines)


TEXTS = st.one_of(
    array_texts(),
    line_texts(),
    st.text(alphabet='[]{},:" \n\r\t01a\\\ufeff', max_size=12),
    array_texts().map(lambda t: "\ufeff" + t),
    array_texts().map(lambda t: t[:-2] if len(t) > 2 else t),  # cut short
    array_texts().map(lambda t: t + "\n" + t),  # JSON lines of arrays
)


@given(text=TEXTS, json_file=st.booleans(), json_path=st.sampled_from([None, "$[*]"]))
@example(text="[1]\n[2]", json_file=False, json_path=None)
@example(text="[1,]", json_file=False, json_path=None)
@example(text="\ufeff\ufeff[1]", json_file=False, json_path=None)
@example(text=" \u00a0 ", json_file=False, json_path=None)
@example(text="[ ]", json_file=True, json_path="$[*]")
@example(text='{"a": 1}', json_file=False, json_path="$[*]")
@example(text="7", json_file=False, json_path="$[*]")
@example(text='["\\ud800"]', json_file=True, json_path=None)
@example(text='"\\ud800"\n1', json_file=False, json_path=None)
def test_lazy_source_gives_what_parsing_whole_gives(
    text: str, json_file: bool, json_path: str | None
) -> None:
    raw = InputText(text, "input.json" if json_file else "input.txt", json_file)
    assert outcome(lambda: lazily(raw, json_path)) == outcome(lambda: whole(raw, json_path))


KEYS = st.sampled_from(['"items"', '"a"', '"b"', '"\\u0069tems"', '"zz"'])


@st.composite
def document_texts(draw: st.DrawFn, depth: int = 0) -> str:
    """A JSON object whose members may lead through objects to arrays; names repeat."""
    members = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["array", "value", "object"][: 3 if depth < 2 else 2]))
        if kind == "array":
            value = draw(array_texts())
        elif kind == "object":
            value = draw(document_texts(depth + 1))
        else:
            value = json.dumps(draw(JSON_VALUES))
        members.append(f"{draw(SPACE)}{draw(KEYS)}{draw(SPACE)}:{draw(SPACE)}{value}")
    return "{" + ",".join(members) + draw(SPACE) + "}"


MEMBER_PATHS = st.sampled_from(
    ["$", "$[*]", "$.items", "$.items[*]", "$.a.items", "$.a.b[*]", "$.zz[*]", "$..items"]
)


@given(
    text=st.one_of(
        document_texts(),
        document_texts().map(lambda t: t[:-1]),
        document_texts().map(lambda t: t + " 1"),
        array_texts(),
    ),
    json_file=st.booleans(),
    json_path=MEMBER_PATHS,
)
@example(text='{"items": [1], "items": 2}', json_file=True, json_path="$.items[*]")
@example(text='{"items": 2, "items": [1, 2]}', json_file=True, json_path="$.items")
@example(text='{"items": []}', json_file=True, json_path="$.items[*]")
@example(text='{"zz": 1, "items": [{"b": 2}], "a": {}}', json_file=False, json_path="$.items")
def test_member_paths_give_what_parsing_whole_gives(
    text: str, json_file: bool, json_path: str
) -> None:
    raw = InputText(text, "input.json" if json_file else "input.txt", json_file)
    assert outcome(lambda: lazily(raw, json_path)) == outcome(lambda: whole(raw, json_path))


@pytest.mark.parametrize(
    ("text", "json_path"),
    [
        ('[{"n": 1}, {"n": 2}]', None),
        ('[{"n": 1}, {"n": 2}]', "$[*]"),
        ('{"n": 0, "items": [{"n": 1}], "a": {"items": [1]}}', "$.items[*]"),
        ('{"a": {"b": [1, 2]}}', "$.a.b"),
        ('{"n": 1}\n{"n": 2}\n', None),
        ("a.py\nb.py\n", "$[*]"),
    ],
)
def test_arrays_json_lines_and_plain_lines_are_never_parsed_whole(
    monkeypatch: pytest.MonkeyPatch, text: str, json_path: str | None
) -> None:
    # Given an input whose values can be read one at a time
    raw = InputText(text, "input.jsonl", False)
    expected = whole(raw, json_path)

    def parse_whole(raw: InputText) -> Any:
        raise AssertionError("parsed whole")

    monkeypatch.setattr(source_module, "parse_input", parse_whole)
    # Then: they are, and they are what parsing it whole gives
    assert lazily(raw, json_path) == expected


@pytest.mark.parametrize("json_path", ["$..n", "$.items[0]", "$['items'][*]"])
def test_other_json_paths_are_read_whole(json_path: str) -> None:
    raw = InputText('{"items": [{"n": 1}, {"n": 2}]}', "input.json", True)
    source = open_source(raw, json_path)
    assert list(source.values) == extract(parse_input(raw), json_path)
    assert source.digest == input_digest(parse_input(raw))


def test_a_json_file_that_is_no_json_raises_what_parsing_it_whole_raises() -> None:
    raw = InputText("[1, 2,\n 3", "items.json", True)
    assert outcome(lambda: lazily(raw, None)) == outcome(lambda: whole(raw, None))
    assert "items.json is not valid JSON" in outcome(lambda: lazily(raw, None))[2]


@given(text=st.text(alphabet="ab \r\n\u00a0", max_size=20))
def test_nonblank_lines_are_the_split_lines_without_cr_and_blanks(text: str) -> None:
    expected = [line.rstrip("\r") for line in text.split("\n")]
    assert list(nonblank_lines(text)) == [line for line in expected if line.strip()]


@given(line=st.one_of(JSON_VALUES.map(json.dumps), st.text(max_size=8)).flatmap(
    lambda t: st.tuples(SPACE, st.just(t), SPACE).map("".join)
))  # fmt: skip
def test_json_line_is_json_loads(line: str) -> None:
    assert outcome(lambda: (same([json_line(line)]),)) == outcome(
        lambda: (same([json.loads(line)]),)
    )
