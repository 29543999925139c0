"""select_items: json_path, filter, sort_by, distinct, offset, max_items and ids, in order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapwise.errors import InputError
from mapwise.fields import MISSING
from mapwise.items import (
    FilterSyntaxError,
    Item,
    SortSyntaxError,
    compile_filter,
    compile_sort,
    field_getter,
    iter_selected,
    select_items,
)
from mapwise.items._values import canonical_json
from mapwise.items.pipeline import _find, _member_path


def select(data: Any, **options: Any) -> list[Item]:
    defaults: dict[str, Any] = {
        "json_path": None,
        "filter": None,
        "sort_by": None,
        "distinct": None,
        "offset": 0,
        "max_items": None,
    }
    return select_items(data, **{**defaults, **options})


def values(items: list[Item]) -> list[Any]:
    return [item.value for item in items]


FINDINGS = {
    "tool": "ruff",
    "findings": [
        {"code": "F401", "filename": "b.py", "row": 3},
        {"code": "E501", "filename": "a.py", "row": 9},
        {"code": "W291", "filename": "a.py", "row": 1},
        {"code": "F401", "filename": "a.py", "row": 2},
        {"code": "E501", "filename": "c.py", "row": None},
    ],
}


def test_full_pipeline_applies_the_steps_in_order() -> None:
    # Given findings under a key, filtered, sorted, made distinct, and paged
    items = select(
        FINDINGS,
        json_path="$.findings[*]",
        filter="code in ['F401','E501']",
        sort_by="filename, row DESC",
        distinct="filename",
        offset=1,
        max_items=1,
    )
    # Then: filter drops W291; sort gives a.py/9, a.py/2, b.py, c.py; distinct keeps
    # a.py/9, b.py, c.py; offset 1 and max 1 leave b.py
    assert values(items) == [{"code": "F401", "filename": "b.py", "row": 3}]
    assert items[0].index == 0
    assert items[0].item_id == "0"


def test_without_json_path_a_list_is_the_items_and_a_value_is_one_item() -> None:
    assert values(select([1, 2, 3])) == [1, 2, 3]
    assert values(select({"a": 1})) == [{"a": 1}]
    assert values(select("hello")) == ["hello"]
    assert values(select(None)) == [None]


def test_singular_json_path_to_an_array_gives_its_elements() -> None:
    assert values(select(FINDINGS, json_path="$.findings")) == FINDINGS["findings"]
    assert values(select([[1, 2], [3]], json_path="$")) == [[1, 2], [3]]
    assert values(select({"a": {"b": 1}}, json_path="$.a")) == [{"b": 1}]


def test_wildcard_json_path_keeps_array_matches_as_items() -> None:
    data = {"groups": [[1, 2], [3]]}
    assert values(select(data, json_path="$.groups[*]")) == [[1, 2], [3]]


def test_json_path_filter_selector() -> None:
    data = {"items": [{"x": 1}, {"x": 5}]}
    assert values(select(data, json_path="$.items[?@.x > 2]")) == [{"x": 5}]


def test_json_path_matching_nothing_says_what_the_input_looked_like() -> None:
    with pytest.raises(InputError) as caught:
        select(FINDINGS, json_path="$.items[*]")
    message = str(caught.value)
    assert "'$.items[*]'" in message
    assert "matched nothing" in message
    assert "an object with keys tool, findings" in message


def test_json_path_matching_nothing_in_an_array_describes_the_first_element() -> None:
    with pytest.raises(InputError, match=r"an array of 2 values, the first an object with keys a"):
        select([{"a": 1}, {"a": 2}], json_path="$[*].b")


def test_invalid_json_path_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"json_path '\$\[' is invalid"):
        select([1], json_path="$[")


def test_empty_input_gives_zero_items_even_with_json_path() -> None:
    assert select([]) == []
    assert select([], json_path="$[*]") == []
    assert select({}, json_path="$.items[*]") == []


def test_filter_and_sort_may_leave_zero_items() -> None:
    assert select([{"x": 1}], filter="x > 5", sort_by="x") == []


def test_filter_and_sort_syntax_errors_propagate() -> None:
    with pytest.raises(FilterSyntaxError):
        select([1], filter="x ==")
    with pytest.raises(SortSyntaxError):
        select([1], sort_by="x SIDEWAYS")


def test_malformed_distinct_path_is_an_input_error() -> None:
    with pytest.raises(InputError, match="distinct: malformed field path"):
        select([{"a": 1}], distinct="a[")


def test_distinct_compares_json_values_and_treats_missing_as_its_own_value() -> None:
    data = [
        {"k": {"a": 1, "b": 2}, "n": 0},
        {"k": {"b": 2, "a": 1}, "n": 1},
        {"k": [1, 2], "n": 2},
        {"k": [1, 2], "n": 3},
        {"k": None, "n": 4},
        {"n": 5},
        {"n": 6},
        {"k": 1, "n": 7},
        {"k": 1.0, "n": 8},
        {"k": True, "n": 9},
        {"k": "1", "n": 10},
    ]
    assert [v["n"] for v in values(select(data, distinct="k"))] == [0, 2, 4, 5, 7, 9, 10]


def test_ids_from_make_id_get_the_final_position() -> None:
    seen: list[tuple[Any, int]] = []

    def make_id(value: Any, position: int) -> str:
        seen.append((value, position))
        return f"{value['filename']}:{value['row']}"

    items = select(FINDINGS, json_path="$.findings[*]", sort_by="row", offset=2, make_id=make_id)
    assert [item.item_id for item in items] == ["b.py:3", "a.py:9", "c.py:None"]
    assert [item.index for item in items] == [0, 1, 2]
    assert [position for _, position in seen] == [0, 1, 2]


def test_duplicate_ids_are_listed_with_positions() -> None:
    data = [{"f": "a"}, {"f": "b"}, {"f": "a"}, {"f": "c"}, {"f": "b"}, {"f": "a"}]
    with pytest.raises(InputError) as caught:
        select(data, make_id=lambda value, _pos: value["f"])
    message = str(caught.value)
    assert "must be unique" in message
    assert "'a' at positions 0, 2, 5" in message
    assert "'b' at positions 1, 4" in message
    assert "'c'" not in message


def test_at_most_ten_duplicated_ids_are_listed() -> None:
    data = list(range(12)) * 2
    with pytest.raises(InputError) as caught:
        select(data, make_id=lambda value, _pos: f"id{value}")
    message = str(caught.value)
    assert "'id9'" in message
    assert "'id10'" not in message
    assert "and 2 more duplicated ids" in message


def test_empty_id_is_an_error() -> None:
    with pytest.raises(InputError, match="must not be empty; empty at positions 1"):
        select(["a", "", "c"], make_id=lambda value, _pos: value)


def test_negative_offset_is_rejected() -> None:
    with pytest.raises(ValueError):
        select([1], offset=-1)


# --------------------------------------------------------------------------- properties

records = st.lists(
    st.fixed_dictionaries(
        {"n": st.integers(0, 100)},
        optional={"k": st.none() | st.integers(0, 3) | st.sampled_from(["a", "b"])},
    ),
    max_size=20,
)


@given(records)
def test_distinct_keeps_first_occurrences_in_order(data: list[dict[str, Any]]) -> None:
    result = values(select(data, distinct="k"))
    reference: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in data:
        key = canonical_json(record["k"]) if "k" in record else "<missing>"
        if key not in seen:
            seen.add(key)
            reference.append(record)
    assert result == reference


@given(
    st.lists(st.integers(), max_size=20),
    st.integers(0, 25),
    st.none() | st.integers(0, 25),
)
def test_offset_and_max_items_equal_list_slicing(
    data: list[int], offset: int, max_items: int | None
) -> None:
    expected = data[offset:] if max_items is None else data[offset : offset + max_items]
    items = select(data, offset=offset, max_items=max_items)
    assert values(items) == expected
    assert [item.index for item in items] == list(range(len(expected)))
    assert [item.item_id for item in items] == [str(i) for i in range(len(expected))]


@given(records, st.sampled_from(["n > 50", "k == 'a' || n < 10", "!is_null(k)"]))
def test_filter_keeps_exactly_the_matching_items_in_order(
    data: list[dict[str, Any]], expr: str
) -> None:
    kept = values(select(data, filter=expr))
    assert all(item in data for item in kept)
    assert len(kept) <= len(data)
    assert [d for d in data if d in kept] == kept


# --------------------------------------------------------------------------- lazy and list


def _list_pipeline(data: list[Any], **clauses: Any) -> list[Any]:
    """The pipeline written plainly, one list per step: what the lazy one must match."""
    values = list(data)
    if clauses["filter"] is not None:
        predicate = compile_filter(clauses["filter"])
        values = [value for value in values if predicate(value)]
    if clauses["sort_by"] is not None:
        values = compile_sort(clauses["sort_by"])(values)
    if clauses["distinct"] is not None:
        get = field_getter(clauses["distinct"])
        seen: set[str | None] = set()
        kept = []
        for value in values:
            field = get(value)
            key = None if field is MISSING else canonical_json(field)
            if key not in seen:
                seen.add(key)
                kept.append(value)
        values = kept
    values = values[clauses["offset"] :]
    if clauses["max_items"] is not None:
        values = values[: clauses["max_items"]]
    return values


mixed = st.none() | st.booleans() | st.integers(-2, 2) | st.floats() | st.sampled_from(["a", "b"])
mixed_records = st.lists(
    st.fixed_dictionaries({}, optional={"a": mixed, "b": mixed | st.lists(mixed, max_size=2)}),
    max_size=15,
)


@given(
    mixed_records,
    st.sampled_from([None, "a > 0", "b == 'a' || is_null(a)", "a in [1, 'b', true]"]),
    st.sampled_from([None, "a", "a DESC", "b NULLS FIRST, a DESC", "a ASC NULLS FIRST"]),
    st.sampled_from([None, "a", "b"]),
    st.integers(0, 4),
    st.none() | st.integers(0, 4),
)
def test_lazy_pipeline_gives_what_the_list_pipeline_gave(
    data: list[dict[str, Any]],
    filter: str | None,
    sort_by: str | None,
    distinct: str | None,
    offset: int,
    max_items: int | None,
) -> None:
    clauses = {
        "filter": filter,
        "sort_by": sort_by,
        "distinct": distinct,
        "offset": offset,
        "max_items": max_items,
    }
    # Given the values as an iterator, as the freeze streams them
    lazy = list(iter_selected(iter(data), **clauses))
    # Then: the same values in the same order (NaN compared as text)
    assert json.dumps(lazy) == json.dumps(_list_pipeline(data, **clauses))


documents = st.recursive(
    mixed,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "items", "true", "length", "_"]), inner)
    ),
    max_leaves=10,
)


@given(
    documents,
    st.sampled_from(
        ["$", "$[*]", "$.a", "$.a[*]", "$.items", "$.items[*]", "$.a.b", "$.a.b[*]",
         "$.true", "$.length[*]", "$._.a"]
    ),
)  # fmt: skip
def test_member_paths_select_what_python_jsonpath_selects(data: Any, json_path: str) -> None:
    assert json.dumps(_member_path(data, json_path)) == json.dumps(_find(data, json_path))


def test_only_plain_member_paths_are_followed_by_hand() -> None:
    assert _member_path({"a": 1}, "$['a']") is None
    assert _member_path({"a": 1}, "$..a") is None
    assert _member_path({"a": 1}, "$.a[0]") is None
