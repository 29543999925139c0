"""Placeholders, plain rendering and the errors for variables that must resolve."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapwise.errors import InterpolationError, UserError
from mapwise.fields import MISSING
from mapwise.interpolate import (
    Placeholder,
    Scope,
    bind_shell,
    find_placeholders,
    format_value,
    missing_item_fields,
    render_plain,
)
from mapwise.interpolate_shell import bind_shell_script

ITEM = {"id": 7, "name": "Ada", "a": {"b": "deep"}, "xs": [10, "s", None], "ok": True, "f": 0.5}


def _map_scope(**overrides: Any) -> Scope:
    base: dict[str, Any] = {
        "job_id": "job-1",
        "env": {"REPORT_DIR": ".reports", "BOTH": "from env"},
        "captures": {"fix_output": "fixed 3", "BOTH": "from capture"},
        "item": ITEM,
        "item_id": "item-7",
        "item_index": 4,
        "attempt": 2,
    }
    return Scope(**(base | overrides))


def _reduce_scope() -> Scope:
    map_vars = {
        "total": "10",
        "successful": "8",
        "failed": "2",
        "results": "[]",
        "results_file": "/tmp/r.json",
    }
    return Scope(job_id="job-1", env={"N": "1"}, map_vars=map_vars)


# --- find_placeholders ----------------------------------------------------------------


def test_find_placeholders_reports_text_name_position_and_raw() -> None:
    template = "a ${item.a.b} $NAME ${raw:item.x} ${item.xs[0]}"
    found = find_placeholders(template)
    assert found == [
        Placeholder("${item.a.b}", "item.a.b", 2, 13, False),
        Placeholder("$NAME", "NAME", 14, 19, False),
        Placeholder("${raw:item.x}", "item.x", 20, 33, True),
        Placeholder("${item.xs[0]}", "item.xs[0]", 34, 47, False),
    ]
    for placeholder in found:
        assert template[placeholder.start : placeholder.end] == placeholder.text


@pytest.mark.parametrize(
    "template",
    ["$$", "$1", "$(cmd)", "$((1+2))", "${#x}", "${x:-d}", "${1}", "$", "${}", "$@", "$?"],
)
def test_shell_syntax_is_not_a_placeholder(template: str) -> None:
    assert find_placeholders(template) == []


def test_pid_before_a_name_is_not_a_placeholder() -> None:
    # `$$NAME` is the shell's process id followed by the text NAME
    assert find_placeholders("$$NAME") == []


@pytest.mark.parametrize("name", ["item", "item_id", "item_index", "attempt", "job_id"])
def test_bare_builtins_stay_shell_variables(name: str) -> None:
    # `for item in a b; do echo $item; done` must keep meaning the shell's $item
    assert find_placeholders(f"${name}") == []
    assert [p.name for p in find_placeholders(f"${{{name}}}")] == [name]


def test_every_builtin_form_is_found() -> None:
    template = "${item}${item[1]}${item_id}${item_index}${attempt}${job_id}${map.total}${x_1}"
    names = [p.name for p in find_placeholders(template)]
    expected = ["item", "item[1]", "item_id", "item_index", "attempt", "job_id", "map.total"]
    assert names == [*expected, "x_1"]


# --- render_plain: every kind of variable -----------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${item.name}", "Ada"),
        ("${item.id}", "7"),
        ("${item.a.b}", "deep"),
        ("${item.a}", '{"b":"deep"}'),
        ("${item.xs}", '[10,"s",null]'),
        ("${item.xs[0]}", "10"),
        ("${item.xs[1]}", "s"),
        ("${item.xs[2]}", "null"),
        ("${item.xs[-1]}", "null"),
        ("${item.ok}", "true"),
        ("${item.f}", "0.5"),
        ("${item_id}", "item-7"),
        ("${item_index}", "4"),
        ("${attempt}", "2"),
        ("${job_id}", "job-1"),
        ("${REPORT_DIR}/x", ".reports/x"),
        ("$REPORT_DIR/x", ".reports/x"),
        ("${fix_output}", "fixed 3"),
        ("$fix_output!", "fixed 3!"),
        ("${raw:item.name}", "Ada"),
    ],
)
def test_render_plain_substitutes_each_kind(template: str, expected: str) -> None:
    assert render_plain(template, _map_scope()) == expected


def test_render_plain_whole_item() -> None:
    assert render_plain("${item}", _map_scope()) == json.dumps(ITEM, separators=(",", ":"))
    assert render_plain("<${item}>", _map_scope(item="just text")) == "<just text>"
    assert render_plain("${item}", _map_scope(item=None)) == "null"
    assert render_plain("${item[0]}", _map_scope(item=["a", "b"])) == "a"


def test_render_plain_keeps_unicode_as_text() -> None:
    assert render_plain("${item}", _map_scope(item={"k": "żółw"})) == '{"k":"żółw"}'


def test_render_plain_map_variables() -> None:
    template = (
        "${map.successful}/${map.total} failed ${map.failed} ${map.results} ${map.results_file}"
    )
    assert render_plain(template, _reduce_scope()) == "8/10 failed 2 [] /tmp/r.json"


def test_capture_wins_over_workflow_variable_of_the_same_name() -> None:
    assert render_plain("${BOTH} $BOTH", _map_scope()) == "from capture from capture"


def test_unknown_names_and_shell_syntax_are_left_as_written() -> None:
    template = "${HOME} $HOME $$ $1 $(date) $((1+1)) ${x:-d} $item ${FOO.bar}"
    assert render_plain(template, _map_scope()) == template


def test_unresolved_raw_drops_the_prefix_for_the_shell() -> None:
    assert render_plain("${raw:HOME}", _map_scope()) == "${HOME}"


def test_values_are_not_substituted_twice() -> None:
    # a value that looks like a placeholder stays text
    scope = _map_scope(item={"v": "${item.v} ${job_id}"})
    assert render_plain("${item.v}", scope) == "${item.v} ${job_id}"


@given(st.text())
def test_a_template_without_dollar_renders_unchanged(text: str) -> None:
    template = text.replace("$", "")
    assert render_plain(template, _map_scope()) == template


# shell syntax that the scanner tracks (quotes, here-documents, substitutions), no ``$``
_SCRIPT_TEXT = st.text(
    alphabet=st.sampled_from(list("ab \t\n'\"`\\(){}<>-;|&#EOF")), max_size=60
) | st.text(max_size=40).map(lambda text: text.replace("$", ""))


@given(_SCRIPT_TEXT)
def test_a_script_without_dollar_binds_to_itself(script: str) -> None:
    """bind_shell answers such a script without scanning it: the scanner agrees."""
    scanned = bind_shell_script(script, _map_scope())
    assert (scanned.script, scanned.env) == (script, {})
    fast = bind_shell(script, _map_scope())
    assert (fast.script, fast.env) == (script, {})


# --- errors for variables that must resolve -----------------------------------------------


@pytest.mark.parametrize(
    "template", ["${item}", "${item.a}", "${item_id}", "${item_index}", "${attempt}"]
)
def test_item_variables_outside_the_map_phase_are_errors(template: str) -> None:
    with pytest.raises(InterpolationError, match="map phase") as info:
        render_plain(template, _reduce_scope())
    assert template in str(info.value)


def test_missing_item_field_names_the_field_and_the_item() -> None:
    with pytest.raises(InterpolationError) as info:
        render_plain("run ${item.a.nope}", _map_scope())
    assert "${item.a.nope}" in str(info.value)
    assert "'a.nope'" in str(info.value)
    assert "'item-7'" in str(info.value)
    assert info.value.exit_code == 2
    assert isinstance(info.value, UserError)


def test_missing_item_field_names_the_index_without_an_id() -> None:
    with pytest.raises(InterpolationError, match="#4"):
        render_plain("${item.nope}", _map_scope(item_id=None))


def test_index_out_of_range_is_an_error() -> None:
    with pytest.raises(InterpolationError, match=r"xs\[9\]"):
        render_plain("${item.xs[9]}", _map_scope())


def test_map_variables_outside_reduce_are_errors() -> None:
    with pytest.raises(InterpolationError, match=r"\$\{map\.total\}.*reduce"):
        render_plain("${map.total}", _map_scope())


def test_unknown_map_variable_is_an_error() -> None:
    with pytest.raises(InterpolationError, match=r"\$\{map\.nope\}.*unknown"):
        render_plain("${map.nope}", _reduce_scope())


# --- missing_item_fields ---------------------------------------------------------------


def test_missing_item_fields_lists_each_unresolved_path_once() -> None:
    template = "${item.name} ${item.nope} ${item.a.x} ${item.nope} ${item.xs[5]} ${job_id} $X"
    assert missing_item_fields(template, ITEM) == ["item.nope", "item.a.x", "item.xs[5]"]


def test_missing_item_fields_is_empty_when_all_resolve() -> None:
    assert missing_item_fields("${item} ${item.xs[0]} ${raw:item.a.b} ${HOME}", ITEM) == []


def test_missing_item_fields_without_an_item_lists_every_item_variable() -> None:
    assert missing_item_fields("${item} ${item.a} ${item_id}", MISSING) == ["item", "item.a"]


def test_missing_item_fields_counts_a_path_into_a_scalar_as_missing() -> None:
    assert missing_item_fields("${item.name.first}", ITEM) == ["item.name.first"]


@given(st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(), max_size=4))
def test_missing_item_fields_agrees_with_render_plain(item: dict[str, int]) -> None:
    template = "${item.a} ${item.b} ${item.ab}"
    missing = missing_item_fields(template, item)
    if missing:
        with pytest.raises(InterpolationError):
            render_plain(template, _map_scope(item=item))
    else:
        rendered = render_plain(template, _map_scope(item=item))
        assert rendered == f"{item['a']} {item['b']} {item['ab']}"


# --- format_value ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("s", "s"),
        (1, "1"),
        (-2.5, "-2.5"),
        (True, "true"),
        (None, "null"),
        ([1, {"a": 2}], '[1,{"a":2}]'),
    ],
)
def test_format_value(value: Any, text: str) -> None:
    assert format_value(value) == text
