"""The map.sort_by clause: keys, directions, NULLS placement, mixed types, stability."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapwise.fields import MISSING
from mapwise.items import SortSyntaxError, compile_sort, field_getter
from mapwise.items._values import canonical_json, order_key
from mapwise.items.sort import SortKey, compile_packed_sort, parse_sort


def test_prodigy_example_sorts_by_two_keys() -> None:
    # Given findings in several files and rows, one without a location
    items = [
        {"filename": "b.py", "location": {"row": 1}},
        {"filename": "a.py", "location": {"row": 1}},
        {"filename": "a.py"},
        {"filename": "a.py", "location": {"row": 9}},
    ]
    # When sorted by filename, then row descending with nulls last
    result = compile_sort("filename ASC, location.row DESC NULLS LAST")(items)
    # Then files are ascending, rows descending, the missing row last within its file
    assert result == [items[3], items[1], items[2], items[0]]


def test_default_direction_is_ascending_and_case_is_ignored() -> None:
    items = [{"p": 3}, {"p": 1}, {"p": 2}]
    assert [i["p"] for i in compile_sort("p")(items)] == [1, 2, 3]
    assert [i["p"] for i in compile_sort("p desc")(items)] == [3, 2, 1]
    assert [i["p"] for i in compile_sort("p Descending")(items)] == [3, 2, 1]
    assert [i["p"] for i in compile_sort("item.p ASCENDING")(items)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("x", [1, 2, None, None]),
        ("x ASC NULLS LAST", [1, 2, None, None]),
        ("x DESC", [2, 1, None, None]),
        ("x ASC NULLS FIRST", [None, None, 1, 2]),
        ("x DESC NULLS FIRST", [None, None, 2, 1]),
        ("x nulls first", [None, None, 1, 2]),
    ],
)
def test_nulls_and_missing_are_placed_as_asked(clause: str, expected: list[Any]) -> None:
    items = [{"x": 2}, {}, {"x": None}, {"x": 1}]
    assert [i.get("x") for i in compile_sort(clause)(items)] == expected


def test_nulls_keep_their_input_order() -> None:
    items = [{"n": 1}, {"x": None, "n": 2}, {"x": 5, "n": 3}, {"n": 4}]
    assert [i["n"] for i in compile_sort("x DESC")(items)] == [3, 1, 2, 4]


def test_mixed_types_sort_by_type_then_value_without_raising() -> None:
    items = [{"x": v} for v in ["b", 2, {"k": 1}, True, [1], 1.5, "a", False, None]]
    result = [i["x"] for i in compile_sort("x")(items)]
    assert result == [False, True, 1.5, 2, "a", "b", [1], {"k": 1}, None]


def test_sorting_string_items_by_bare_item() -> None:
    assert compile_sort("item DESC")(["b", "c", "a"]) == ["c", "b", "a"]


def test_sort_returns_a_new_list() -> None:
    items = [{"x": 2}, {"x": 1}]
    compile_sort("x")(items)
    assert items == [{"x": 2}, {"x": 1}]


def test_parse_sort_keys() -> None:
    assert parse_sort(" a.b[0] DESC NULLS FIRST , c ") == [
        SortKey("a.b[0]", descending=True, nulls_first=True),
        SortKey("c"),
    ]


@pytest.mark.parametrize(
    ("clause", "fragment"),
    [
        ("", "sort_by is empty"),
        ("  ", "sort_by is empty"),
        ("a,", "empty key 2"),
        (",a", "empty key 1"),
        ("a UP", "unexpected 'UP' in key 1"),
        ("a ASC DESC", "unexpected 'DESC'"),
        ("a NULLS", "NULLS must be followed by FIRST or LAST"),
        ("a NULLS MIDDLE", "NULLS must be followed by FIRST or LAST"),
        ("a NULLS LAST extra", "unexpected 'extra'"),
        ("a[", "malformed field path"),
        ("b, c d", "unexpected 'd' in key 2"),
    ],
)
def test_syntax_errors_name_the_key(clause: str, fragment: str) -> None:
    with pytest.raises(SortSyntaxError, match=fragment.replace("[", r"\[")):
        compile_sort(clause)


# --------------------------------------------------------------------------- properties

values = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-3, 3) | st.text("ab", max_size=2)
)
records = st.lists(
    st.fixed_dictionaries({}, optional={"x": values, "y": values}),
    max_size=12,
)
clauses = st.sampled_from(
    ["x", "x DESC", "x NULLS FIRST", "x DESC NULLS FIRST", "x, y DESC", "y DESC NULLS FIRST, x"]
)


def _null(item: dict[str, Any], field: str) -> bool:
    return item.get(field) is None


@given(records, clauses)
def test_sort_is_a_permutation(items: list[dict[str, Any]], clause: str) -> None:
    result = compile_sort(clause)(items)
    assert Counter(map(canonical_json, result)) == Counter(map(canonical_json, items))


@given(records, st.booleans(), st.booleans())
def test_sort_orders_values_and_places_nulls(
    items: list[dict[str, Any]], descending: bool, nulls_first: bool
) -> None:
    clause = f"x {'DESC' if descending else 'ASC'} NULLS {'FIRST' if nulls_first else 'LAST'}"
    result = compile_sort(clause)(items)
    nulls = [_null(i, "x") for i in result]
    # Nulls form one block at the requested end.
    expected_nulls = sorted(nulls, reverse=nulls_first)
    assert nulls == expected_nulls
    keys = [order_key(i["x"]) for i in result if not _null(i, "x")]
    assert keys == sorted(keys, reverse=descending)


@given(st.lists(st.integers(0, 3), max_size=15), st.booleans())
def test_sort_is_stable(keys: list[int], descending: bool) -> None:
    items = [{"k": k, "pos": pos} for pos, k in enumerate(keys)]
    result = compile_sort(f"k {'DESC' if descending else 'ASC'}")(items)
    for a, b in itertools.pairwise(result):
        if a["k"] == b["k"]:
            assert a["pos"] < b["pos"]


@given(records)
def test_second_key_breaks_ties_of_the_first(items: list[dict[str, Any]]) -> None:
    result = compile_sort("x, y DESC")(items)
    for a, b in itertools.pairwise(result):
        if canonical_json(a.get("x")) == canonical_json(b.get("x")) and not _null(b, "y"):
            assert _null(a, "y") is False
            assert order_key(a["y"]) >= order_key(b["y"])


# --------------------------------------------------------------------------- packed and flat

any_values = st.recursive(
    values | st.sampled_from([math.nan, math.inf, -0.0, 2**70]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text("ab", max_size=1), inner),
    max_leaves=4,
)
mixed_records = st.lists(
    st.fixed_dictionaries({}, optional={"x": any_values, "y": any_values}), max_size=12
)


def _nested_sort(clause: str, items: list[Any]) -> list[Any]:
    """compile_sort written with nested tuples as keys: what the flat keys must match."""

    def nested_order_key(value: Any) -> tuple[int, Any]:
        if isinstance(value, bool):
            return (0, int(value))
        if isinstance(value, int | float):
            return (1, (1, 0.0) if math.isnan(value) else (0, value))
        if isinstance(value, str):
            return (2, value)
        return (3 if isinstance(value, list) else 4, canonical_json(value))

    result = list(items)
    for key in reversed(parse_sort(clause)):
        null_rank = 0 if key.nulls_first != key.descending else 1
        get = field_getter(key.path)

        def sort_key(item: Any, get: Any = get, null_rank: int = null_rank) -> tuple[int, Any]:
            value = get(item)
            if value is MISSING or value is None:
                return (null_rank, (0, 0))
            return (1 - null_rank, nested_order_key(value))

        result.sort(key=sort_key, reverse=key.descending)
    return result


@given(mixed_records, clauses)
def test_flat_keys_order_as_the_nested_keys_did(items: list[dict[str, Any]], clause: str) -> None:
    expected = _nested_sort(clause, items)
    assert json.dumps(compile_sort(clause)(items)) == json.dumps(expected)


@given(mixed_records, clauses)
def test_packed_sort_orders_as_compile_sort(items: list[dict[str, Any]], clause: str) -> None:
    # Given values sorted packed, from an iterator, as the freeze sorts them
    packed = list(compile_packed_sort(clause)(iter(items)))
    # Then: the same values in the same order as the list sort (NaN compared as text)
    assert json.dumps(packed) == json.dumps(compile_sort(clause)(items))
