"""The map.filter language: prodigy's examples, missing fields, errors, and properties."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapwise.items import FilterSyntaxError, compile_filter

FINDING = {
    "severity": "high",
    "score": 7,
    "ratio": 0.5,
    "category": "b",
    "filename": "src/app.py",
    "tags": ["lint", "style", "fast"],
    "location": {"row": 12, "col": 3},
    "fixes": [{"kind": "auto", "lines": [1, 2]}, {"kind": "manual"}],
    "owner": None,
    "active": True,
    "unified_score": {"final_score": 5.1},
}

TRUE_ON_FINDING = [
    # prodigy's own examples
    "severity == 'high' && score > 5",
    "severity == 'high' || severity == 'critical'",
    "category in ['a','b']",
    'category in ["a", "b"]',
    "!is_null(filename)",
    "!(score > 10)",
    "unified_score.final_score >= 5",
    # operators on numbers, strings and nested paths
    "score == 7",
    "score = 7",
    "score == 7.0",
    "score != 8",
    "score >= 7 && score <= 7",
    "score > 6.5 && score < 7.5",
    "ratio < 1",
    "severity > 'a'",
    "severity != 5",
    "location.row == 12",
    "tags[0] == 'lint'",
    "tags[-1] == 'fast'",
    "fixes[0].lines[1] == 2",
    "fixes[1].kind == 'manual'",
    "owner == null",
    "active == true",
    "active",
    "active && true",
    "score == -7 || score > -1",
    # precedence: && binds tighter than ||, ! tighter than &&
    "score > 100 || severity == 'high' && category == 'b'",
    "(score > 100 || severity == 'high') && category == 'b'",
    "!score > 100",
    "!!active",
    # word operators, any case
    "severity == 'high' and score > 5",
    "score > 100 OR category == 'b'",
    "not (score > 100)",
    "category not in ['x', 'y']",
    # functions
    "is_null(owner)",
    "is_null(missing_field)",
    "is_not_null(location.row)",
    "contains(filename, 'app')",
    "contains(tags, 'style')",
    "starts_with(filename, 'src/')",
    "ends_with(filename, '.py')",
    "length(tags) > 2",
    "length(tags) == 3",
    "length(filename) == 10",
    "length(location) == 2",
    "length(tags, 3)",
    "matches(filename, '^src/.*\\.py$')",
    "matches(severity, 'ig')",
    "is_empty(owner) && is_empty(nothing) && !is_empty(tags)",
    "is_number(score) && is_string(severity) && is_bool(active)",
    "is_array(tags) && is_object(location)",
    "contains(tags, 'lint') && !contains(tags, 'slow')",
    "is_null(owner) == true",
    # prodigy's docs prefix fields with item.
    "item.score >= 5",
    "item.location.row == 12",
]

FALSE_ON_FINDING = [
    "severity == 'low'",
    "score > 7",
    "score < 7",
    "score == '7'",
    "active == 1",
    "score == true",
    "category in ['x', 'y']",
    "score > 100 || severity == 'high' && category == 'x'",
    "!(severity == 'high')",
    "is_null(filename)",
    "is_not_null(owner)",
    "contains(tags, 'sty')",
    "contains(filename, 'zzz')",
    "starts_with(filename, 'app')",
    "starts_with(score, '7')",
    "length(tags) > 3",
    "length(score) > 0",
    "matches(filename, '^app')",
    "owner",
    "severity",
    # incompatible types: false, never an exception
    "severity > 5",
    "score > 'a'",
    "tags > 1",
    "location == 12",
    "active > false",
]


@pytest.mark.parametrize("expr", TRUE_ON_FINDING)
def test_expression_is_true_on_finding(expr: str) -> None:
    assert compile_filter(expr)(FINDING) is True


@pytest.mark.parametrize("expr", FALSE_ON_FINDING)
def test_expression_is_false_on_finding(expr: str) -> None:
    assert compile_filter(expr)(FINDING) is False


@pytest.mark.parametrize(
    "expr",
    [
        "nope == 1",
        "nope != 1",
        "nope != null",
        "nope == null",
        "nope > 0",
        "nope < 0",
        "nope in [1, null]",
        "nope not in [1]",
        "location.nope == 1",
        "tags[9] == 'x'",
        "contains(nope, 'a')",
        "starts_with(nope, '')",
        "matches(nope, '.*')",
        "length(nope) >= 0",
        "is_not_null(nope)",
        "nope",
    ],
)
def test_missing_field_makes_comparisons_false(expr: str) -> None:
    assert compile_filter(expr)(FINDING) is False


def test_negating_a_comparison_on_a_missing_field_is_true() -> None:
    # Given a comparison that is false because the field is missing
    # Then its negation is true: ! is plain boolean negation
    assert compile_filter("!(nope == 1)")(FINDING) is True


def test_filter_on_string_items_uses_bare_item() -> None:
    predicate = compile_filter("starts_with(item, 'src/') && !ends_with(item, '.md')")
    assert [predicate(v) for v in ["src/a.py", "src/b.md", "docs/c.py"]] == [True, False, False]


def test_literal_item_key_wins_over_the_item_prefix() -> None:
    predicate = compile_filter("item.x == 1")
    assert predicate({"item": {"x": 1}, "x": 2}) is True
    assert predicate({"x": 1}) is True


def test_string_escapes_keep_regex_backslashes() -> None:
    assert compile_filter(r"matches(code, '^E\d+$')")({"code": "E501"}) is True
    assert compile_filter(r"name == 'it\'s'")({"name": "it's"}) is True
    assert compile_filter(r'name == "say \"hi\""')({"name": 'say "hi"'}) is True


def test_in_list_matches_json_values_of_any_type() -> None:
    predicate = compile_filter("x in [1, 'a', true, null]")
    assert [predicate({"x": v}) for v in [1, 1.0, "a", True, None, 2, "b", False]] == [
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_non_literal_regex_pattern_that_is_invalid_is_false() -> None:
    assert compile_filter("matches(text, pattern)")({"text": "a", "pattern": "("}) is False
    assert compile_filter("matches(text, pattern)")({"text": "abc", "pattern": "b"}) is True


@pytest.mark.parametrize(
    ("expr", "column", "fragment"),
    [
        ("", 1, "empty filter"),
        ("score ==", 9, "expected a field, a literal or a function"),
        ("score == 1 score", 12, "expected '&&', '||' or the end"),
        ("score === 1", 9, "expected a field"),
        ("(score == 1", 12, "expected ')'"),
        ("score == 1)", 11, "expected '&&'"),
        ("name == 'abc", 9, "unterminated string"),
        ("score # 1", 7, "unexpected character '#'"),
        ("frobnicate(x)", 1, "unknown function 'frobnicate'"),
        ("contains(x)", 1, "contains() takes 2"),
        ("length(x, 1, 2)", 1, "length() takes 1 or 2"),
        ("x in 'a'", 6, "expected '[' after 'in'"),
        ("x in [a]", 7, "expected a literal in the list"),
        ("x in [1 2]", 9, "expected ',' or ']'"),
        ("matches(x, '(')", 12, "invalid regular expression"),
        ("matches(x, 5)", 12, "pattern must be a string"),
        ("a < b < c", 7, "expected '&&'"),
        ("&& x", 1, "expected a field"),
        ("x &&", 5, "expected a field"),
    ],
)
def test_syntax_errors_say_what_and_where(expr: str, column: int, fragment: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        compile_filter(expr)
    assert caught.value.column == column
    assert fragment in str(caught.value)
    assert f"column {column}" in str(caught.value)


def test_syntax_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="in filter 'x =='"):
        compile_filter("x ==")


# --------------------------------------------------------------------------- properties

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "xs", "item", "n"]), inner, max_size=4)
    ),
    max_leaves=12,
)
fields = st.sampled_from(["a", "b", "a.b", "xs[0]", "xs[1].a", "n", "item", "item.a"])
literals = st.sampled_from(["1", "-2.5", "'a'", '""', "true", "false", "null", "0"])
string_literals = ["'a'", '""', "'^x|b$'"]
comparison_ops = st.sampled_from(["==", "!=", ">", ">=", "<", "<="])


@st.composite
def atoms(draw: st.DrawFn) -> str:
    field = draw(fields)
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return f"{field} {draw(comparison_ops)} {draw(literals)}"
    if choice == 1:
        return f"{field} in [{', '.join(draw(st.lists(literals, max_size=3)))}]"
    if choice == 2:
        name = draw(st.sampled_from(["is_null", "is_not_null", "is_empty", "is_array"]))
        return f"{name}({field})"
    if choice == 3:
        name = draw(st.sampled_from(["contains", "starts_with", "ends_with", "matches"]))
        return f"{name}({field}, {draw(st.sampled_from(string_literals))})"
    if choice == 4:
        return f"length({field}) {draw(comparison_ops)} {draw(literals)}"
    return field


expressions = st.recursive(
    atoms(),
    lambda inner: (
        st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        )
        | inner.map(lambda e: f"!{e}")
    ),
    max_leaves=6,
)


@given(expressions, json_values)
def test_filters_compile_and_never_raise_on_any_json_item(expr: str, item: Any) -> None:
    predicate = compile_filter(expr)
    assert predicate(item) in (True, False)


@given(expressions, json_values)
def test_negation_is_the_complement(expr: str, item: Any) -> None:
    assert compile_filter(f"!({expr})")(item) is not compile_filter(expr)(item)


numbers = st.integers(-5, 5) | st.floats(-5, 5, allow_nan=False)


@given(numbers, numbers)
def test_exactly_one_of_less_equal_greater_holds_for_present_numbers(x: float, y: float) -> None:
    item = {"x": x}
    results = [compile_filter(f"x {op} {y!r}")(item) for op in ("<", "==", ">")]
    assert results.count(True) == 1
    assert compile_filter(f"x <= {y!r}")(item) is (results[0] or results[1])
    assert compile_filter(f"x != {y!r}")(item) is not results[1]


@given(st.text(alphabet="abcxyz", max_size=5), st.text(alphabet="abcxyz", max_size=5))
def test_string_comparisons_follow_code_point_order(x: str, y: str) -> None:
    item = {"x": x}
    assert compile_filter(f"x < '{y}'")(item) is (x < y)
    assert compile_filter(f"x >= '{y}'")(item) is (x >= y)
    assert compile_filter(f"x == '{y}'")(item) is (x == y)
    assert compile_filter(f"contains(x, '{y}')")(item) is (y in x)


@given(json_scalars)
def test_comparing_a_number_with_non_numbers_is_false_unless_equal_test(value: Any) -> None:
    item = {"x": value}
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number:
        assert compile_filter("x > 0")(item) is False
        assert compile_filter("x <= 0")(item) is False
        assert compile_filter("x == 0")(item) is False
    elif not math.isnan(value):
        assert compile_filter("x > 0 || x <= 0")(item) is True


def test_unicode_field_names_and_empty_lists() -> None:
    assert compile_filter("größe > 1")({"größe": 2}) is True
    assert compile_filter("x in []")({"x": 1}) is False
    assert compile_filter("x in [1, 2,]")({"x": 2}) is True


def test_absurd_nesting_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(FilterSyntaxError, match="nested too deeply"):
        compile_filter("(" * 5000 + "x" + ")" * 5000)


# -- prodigy's regex operator ------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"path": "src/lib.rs", "has_issues": True}, True),
        ({"path": "src/lib.py", "has_issues": True}, False),
        ({"path": "src/lib.rs", "has_issues": False}, False),
        ({"path": 5, "has_issues": True}, False),  # not a string: no match, no error
        ({"has_issues": True}, False),  # missing: false
    ],
)
def test_matches_finds_a_regular_expression_anywhere_in_a_string(
    item: dict[str, object], expected: bool
) -> None:
    # prodigy's own workflows/fix-files-mapreduce.yml filter
    predicate = compile_filter(r"path matches '\.rs$' && has_issues == true")
    assert predicate(item) is expected


def test_matches_with_a_pattern_that_is_no_regular_expression_is_refused() -> None:
    with pytest.raises(FilterSyntaxError, match="not a regular expression"):
        compile_filter("path MATCHES '(['")
