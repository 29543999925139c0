"""prodigy's capture formats and the step-output variables (``executors.captures``).

prodigy's meaning (``src/cook/workflow/variables.rs``, ``capture_command_result``): json
parses, lines splits, number parses the trimmed text, boolean reads ``true``/``false``
or else the command's success; a parse failure fails the step.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapwise.errors import WorkflowError
from mapwise.executors.captures import captured, mentions_step_output
from mapwise.workflow.loader import parse_workflow
from mapwise.workflow.model import Step


@pytest.mark.parametrize(
    ("fmt", "stdout", "kept"),
    [
        ("string", "hello\n", "hello"),
        ("json", '{"a": 1, "b": [true]}\n', '{"a": 1, "b": [true]}'),
        ("json", "", "null"),
        ("lines", "a\nb\n\nc\n", '["a", "b", "", "c"]'),
        ("number", " 42\n", "42"),
        ("number", "42.0", "42"),
        ("number", "3.5", "3.5"),
        ("number", "", "0"),
        ("boolean", "true\n", "true"),
        ("boolean", "false", "false"),
        ("boolean", "yes", "true"),  # not a bool word: the command's success
    ],
)
def test_each_format_keeps_what_prodigy_keeps(fmt: str, stdout: str, kept: str) -> None:
    assert captured(fmt, stdout, True) == (kept, None)


@pytest.mark.parametrize(
    ("fmt", "stdout", "said"),
    [
        ("json", "{not json", "not JSON"),
        ("number", "forty", "not a number"),
        ("number", "nan", "not a number"),
    ],
)
def test_output_that_does_not_fit_its_format_is_refused(fmt: str, stdout: str, said: str) -> None:
    value, why = captured(fmt, stdout, True)
    assert value is None and why is not None and said in why


@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
        )
    )
)
def test_lines_round_trip_through_json(lines: list[str]) -> None:
    # Given any lines printed one per line, Then the capture is their JSON array
    value, _ = captured("lines", "".join(f"{line}\n" for line in lines), True)
    assert value is not None and json.loads(value) == lines


def test_only_lists_that_read_the_step_output_keep_every_stdout() -> None:
    plain = (Step(shell="true"), Step(shell="echo ${x}"))
    reading = (Step(shell="false", on_failure=(Step(shell="echo ${shell.stderr}"),)),)
    assert not mentions_step_output(plain)
    assert mentions_step_output(reading)


WORKFLOW = """\
name: t
map:
  input: items.json
  agent_template:
    - shell: "make 2>&1"
      capture_output: true
      on_failure: {claude: "/debug ${shell.output}"}
    - claude: "/review ${shell.output}"
      capture_output: true
    - shell: "echo '${claude.output}'"
    - shell: "echo '{}'"
      capture: meta.info
      capture_format: json
    - shell: "echo ${meta.info.a} ${meta.info.items[0].x} ${shell.stderr}"
"""


def test_prodigy_step_output_and_dotted_captures_validate() -> None:
    # Given prodigy's ${shell.output} in a handler, capture_output: true on shell and
    # claude steps, and a dotted JSON capture read by field
    loaded = parse_workflow(WORKFLOW, path="wf.yml")
    template = loaded.workflow.map.agent_template
    # Then it loads, and capture_output: true names prodigy's variables
    assert [s.capture for s in template[:2]] == ["shell.output", "claude.output"]
    assert template[3].capture_format == "json"
    assert not [w for w in loaded.warnings if "shell.output" in w or "meta.info" in w]


def test_an_unknown_dotted_name_is_still_refused() -> None:
    text = WORKFLOW.replace("${meta.info.a}", "${other.a}")
    with pytest.raises(WorkflowError, match=r"other\.a"):
        parse_workflow(text, path="wf.yml")
