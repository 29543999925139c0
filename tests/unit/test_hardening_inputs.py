"""Issue 14, points 5, 6 and 8: deep items, YAML alias bombs and recursive aliases.

Each test fails on the code before the fix: a ``RecursionError`` from sort/distinct on
deep items, an alias bomb expanded into gigabytes, a recursive alias read as null.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mapwise import api
from mapwise.errors import WorkflowError
from mapwise.items._values import canonical_json, json_equal, order_key
from mapwise.workflow.locate import MAX_EXPANDED_VALUES, Problem, parse_yaml


def nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [{"k": value}]
    return value


def alias_bomb(under: str) -> str:
    """About 600 bytes: 9 levels of 9 aliases, 9**9 values once expanded."""
    lines = [f"{under}", "  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        lines.append(f"  a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "name: bomb\n" + "\n".join(lines) + "\n"


def test_deep_values_compare_and_key_without_recursion() -> None:
    # Given values nested far deeper than Python's recursion limit
    deep = nested(3000)
    # When they are keyed (distinct, sort) and compared (filter)
    text = canonical_json(deep)
    key = order_key(deep)
    same = json_equal(deep, nested(3000))
    # Then each answers, as for a shallow value
    assert text.startswith('[{"k":[{"k":') and text.endswith("}]")
    assert key[1] == text
    assert same and not json_equal(deep, nested(2999))


def test_canonical_text_of_a_deep_value_matches_the_shallow_rules() -> None:
    # Given a value mixing integral floats, unsorted keys and escapes
    value = {"b": [1.0, 2.5, True, None, 'q"é'], "a": {}}
    # When it is written canonically
    text = canonical_json(value)
    # Then keys are sorted and 1.0 is written 1
    assert text == '{"a":{},"b":[1,2.5,true,null,"q\\"\\u00e9"]}'


@pytest.mark.parametrize("option", ["sort_by: d", "distinct: d"])
def test_validate_reads_depth_500_items_with_sort_or_distinct(tmp_path: Path, option: str) -> None:
    # Given items 500 levels deep and a workflow that sorts or dedupes on them
    deep: object = 0
    for _ in range(500):
        deep = [deep]
    items = [{"id": "a", "d": deep}, {"id": "b", "d": 1}]
    (tmp_path / "items.json").write_text(json.dumps(items), encoding="utf-8")
    workflow = tmp_path / "wf.yml"
    workflow.write_text(
        f'name: deep\nmap:\n  input: items.json\n  id: "${{item.id}}"\n  {option}\n'
        '  agent_template:\n    - shell: "true"\n',
        encoding="utf-8",
    )
    # When it is validated
    report = api.validate_workflow(workflow, state_dir=tmp_path / "st")
    # Then both items are read, no RecursionError
    assert report.item_count == 2


@pytest.mark.parametrize(
    "under", ["x_unknown:", "merge:", "env:", "map:\n  agent_template:\n    - env:"]
)
def test_an_alias_bomb_is_refused_before_it_is_expanded(under: str) -> None:
    # Given a 600-byte alias bomb under a key
    text = alias_bomb(under) if not under.startswith("map:") else _step_env_bomb()
    assert len(text) < 1000
    # When it is parsed
    with pytest.raises(Problem) as caught:
        parse_yaml(text)
    # Then it is refused with a clear message (the old code expanded 387 million values)
    assert f"more than {MAX_EXPANDED_VALUES:,} values" in caught.value.message
    assert "alias" in caught.value.message


def _step_env_bomb() -> str:
    lines = ["name: bomb", "map:", "  input: items.json", "  agent_template:", "    - shell: x"]
    lines.append("      env:")
    lines.append("        a0: &a0 [x, x, x, x, x, x, x, x, x]")
    for level in range(1, 10):
        lines.append(f"        a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_aliases_within_the_bound_still_expand() -> None:
    # Given ordinary anchors, aliases and a merge key
    text = "base: &b {A: '1'}\nenv:\n  <<: *b\n  B: '2'\nlist: [*b, *b]\n"
    # When it is parsed
    data, _ = parse_yaml(text)
    # Then the aliases expand as before
    assert data["env"] == {"A": "1", "B": "2"}
    assert data["list"] == [{"A": "1"}, {"A": "1"}]


@pytest.mark.parametrize(
    "text",
    [
        "name: r\nenv: &x {A: *x}\n",
        "name: r\nsteps:\n  - shell: 'false'\n    on_failure: &t\n      shell: hi\n"
        "      on_failure: *t\n",
    ],
)
def test_a_recursive_alias_is_refused(text: str) -> None:
    # Given a value that contains itself through an alias
    # When it is parsed
    with pytest.raises(Problem) as caught:
        parse_yaml(text)
    # Then it is refused, not read as null (the old code dropped it silently)
    assert "recursive alias" in caught.value.message


def test_recursive_env_alias_is_refused_by_the_loader(tmp_path: Path) -> None:
    # Given `env: &x {A: *x}`, which the old code ran with $A empty
    workflow = tmp_path / "wf.yml"
    workflow.write_text(
        "name: r\nenv: &x {A: *x}\nmap:\n  input: items.json\n"
        '  agent_template:\n    - shell: "echo $A"\n',
        encoding="utf-8",
    )
    (tmp_path / "items.json").write_text("[1]", encoding="utf-8")
    # When it is validated
    # Then it is refused, as `env: {A: {b: 1}}` is
    with pytest.raises(WorkflowError, match="recursive alias"):
        api.validate_workflow(workflow, state_dir=tmp_path / "st")
