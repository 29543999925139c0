"""``Step.templates()``: the one list of a step's interpolated texts, and the checks and
the freeze that read placeholders through it."""

from __future__ import annotations

from typing import Any

import pytest

from mapwise.engine.freeze import item_templates, step_templates
from mapwise.errors import WorkflowError
from mapwise.workflow.loader import parse_workflow
from mapwise.workflow.model import Step


def _step(**fields: Any) -> Step:
    return Step.model_validate(fields)


def test_every_interpolated_field_is_listed_with_its_keys() -> None:
    step = _step(
        write_file={"path": "out/${item.id}.txt", "content": "${item.body}"},
        env={"A": "${x}", "B": "$y"},
        working_dir="dirs/${item.dir}",
        timeout=5,
        capture="out",
    )
    assert step.template_fields() == (
        (("write_file", "path"), "out/${item.id}.txt"),
        (("write_file", "content"), "${item.body}"),
        (("working_dir",), "dirs/${item.dir}"),
        (("env", "A"), "${x}"),
        (("env", "B"), "$y"),
    )


def test_a_command_is_a_template_and_settings_are_not() -> None:
    assert _step(shell="echo ${item}", timeout=3, capture="c").templates() == ("echo ${item}",)
    assert _step(claude="/review ${item.path}").templates() == ("/review ${item.path}",)


def test_on_failure_steps_follow_depth_first() -> None:
    step = _step(
        shell="a",
        env={"E": "e"},
        on_failure=[
            {"shell": "b", "on_failure": [{"claude": "c"}]},
            {"write_file": {"path": "d", "content": "e2"}},
        ],
    )
    assert step.templates() == ("a", "e", "b", "c", "d", "e2")
    assert [keys for keys, _ in step.template_fields()] == [("shell",), ("env", "E")]


def test_the_freeze_checks_item_fields_of_every_listed_text() -> None:
    steps = (
        _step(shell="true", working_dir="${item.dir}"),
        _step(shell="true", on_failure=[{"shell": "echo ${item.why}"}]),
    )
    texts = step_templates(steps)
    assert texts == ["true", "${item.dir}", "true", "echo ${item.why}"]
    assert item_templates(texts) == ["${item.dir}", "echo ${item.why}"]


def test_load_time_checks_find_a_placeholder_in_a_handlers_env() -> None:
    # Given a setup handler whose env uses an item variable (items exist only in map)
    text = """
name: t
setup:
  - shell: "true"
    on_failure:
      - shell: "true"
        env:
          WHO: "${item.name}"
map:
  input: items.json
  agent_template:
    - shell: "true"
"""
    # When it is loaded
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, path="flow.yml")

    # Then the error names the variable where it sits
    message = str(caught.value)
    assert "${item.name}" in message and "only in the map phase" in message
    assert "on_failure" in message and "WHO" in message
