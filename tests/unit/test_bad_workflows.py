"""A table of bad workflows: each must fail with a clear message at the right line.

Every row is (id, YAML text, a fragment the message must contain, the line it must
name). The loader must raise ``WorkflowError`` (exit code 2), never anything else.
"""

from __future__ import annotations

import pytest

from mapwise.errors import WorkflowError
from mapwise.workflow import parse_workflow

# A valid workflow; rows append to it (lines 1-5 are these).
BASE = """\
name: demo
map:
  input: items.json
  agent_template:
    - shell: echo ${item}
"""
BODY = BASE.removeprefix("name: demo\n")

CASES: list[tuple[str, str, str, int]] = [
    # --- the file itself ---------------------------------------------------------------
    ("empty-file", "", "the workflow file is empty", 1),
    ("only-comments", "# nothing here\n", "the workflow file is empty", 1),
    ("not-a-mapping", "- a\n- b\n", "must be a mapping of keys", 1),
    ("scalar-document", "just text\n", "got 'just text'", 1),
    ("yaml-syntax-error", "name: d\nmap: [1,\n", "YAML syntax error", 3),
    ("yaml-bad-colon", "name: d\nmap: a: b\n", "mapping values are not allowed here", 2),
    ("tab-indent", "name: d\nmap:\n\tinput: x\n", "YAML allows only spaces", 3),
    ("duplicate-key", "name: a\nmap: {}\nname: b\n", "duplicate key 'name'", 3),
    ("unsupported-tag", BASE + "  offset: !foo 1\n", "YAML tag !foo is not supported", 6),
    # --- top level ---------------------------------------------------------------------
    ("missing-name", BODY, "missing required key 'name'", 1),
    ("bad-name", BASE.replace("name: demo", "name: my demo"), "letters, digits", 1),
    ("name-not-text", BASE.replace("name: demo", "name: [a]"), "expected a string", 1),
    ("unknown-top-key", BASE + "nmae: x\n", "unknown key 'nmae' (did you mean 'name'?)", 6),
    ("no-map", "name: d\n", "missing required key 'map'", 1),
    ("map-not-mapping", "name: d\nmap: 5\n", "map: expected a mapping, got 5", 2),
    ("bad-mode", BASE + "mode: batch\n", "must be 'mapreduce', got 'batch'", 6),
    ("env-as-list", BASE + "env: [1]\n", "env: expected a mapping", 6),
    # --- map ---------------------------------------------------------------------------
    (
        "unknown-map-key",
        BASE + "  maxparallel: 3\n",
        "map: unknown key 'maxparallel' (did you mean 'max_parallel'?)",
        6,
    ),
    ("missing-input", "name: d\nmap:\n  agent_template:\n    - shell: a\n", "'input'", 2),
    ("max-parallel-zero", BASE + "  max_parallel: 0\n", "max_parallel: must be at least 1", 6),
    ("max-parallel-bool", BASE + "  max_parallel: true\n", "expected a number, got true", 6),
    ("max-parallel-text", BASE + "  max_parallel: many\n", 'a number or "${VAR}"', 6),
    ("max-parallel-unset-var", BASE + "  max_parallel: ${NOPE}\n", "${NOPE} names no variable", 6),
    (
        "max-parallel-var-not-number",
        "env:\n  N: lots\n" + BASE + "  max_parallel: ${N}\n",
        "${N} is 'lots', not a whole number",
        8,
    ),
    (
        "max-parallel-var-zero",
        "env: {N: 0}\n" + BASE + "  max_parallel: $N\n",
        "$N is 0; it must be at least 1",
        7,
    ),
    ("negative-timeout", BASE + "  timeout: -5\n", "map.timeout: must be greater than 0", 6),
    ("timeout-not-number", BASE + "  timeout: abc\n", "expected a number, got 'abc'", 6),
    ("offset-fraction", BASE + "  offset: 1.5\n", "expected a whole number, got 1.5", 6),
    ("negative-max-items", BASE + "  max_items: -1\n", "map.max_items: must be at least 0", 6),
    ("retry-zero-attempts", BASE + "  retry:\n    max_attempts: 0\n", "must be at least 1", 7),
    (
        "retry-bad-backoff",
        BASE + "  retry: {backoff: random}\n",
        "must be one of 'fixed', 'linear' or 'exponential'",
        6,
    ),
    ("bad-filter", BASE + '  filter: "a =="\n', "map.filter: expected a field", 6),
    ("bad-sort-by", BASE + '  sort_by: "a ASCX"\n', "map.sort_by: unexpected 'ASCX'", 6),
    ("bad-json-path", BASE + '  json_path: "$["\n', "invalid JSONPath '$['", 6),
    ("bad-distinct", BASE + '  distinct: "a..b"\n', "malformed field path 'a..b'", 6),
    ("id-uses-attempt", BASE + "  id: ${attempt}\n", "may only use the item", 6),
    # --- steps -------------------------------------------------------------------------
    (
        "empty-agent-template",
        "name: d\nmap:\n  input: x\n  agent_template: []\n",
        "map.agent_template: must have at least one step",
        4,
    ),
    (
        "step-two-kinds",
        BASE + "      claude: hi\n",
        "exactly one of shell, claude, codex, write_file",
        5,
    ),
    ("step-no-kind", BASE + "    - timeout: 5\n", "(found: none)", 6),
    ("step-typo-kind", BASE + "    - shel: ls\n", "unknown key 'shel' (did you mean 'shell'?)", 6),
    ("step-as-string", BASE + "    - echo hi\n", "expected a step such as {shell: ...}", 6),
    (
        "step-timeout-text",
        BASE + "    - shell: b\n      timeout: soon\n",
        "map.agent_template[1].timeout: expected a number, got 'soon'",
        7,
    ),
    ("capture-invalid-name", BASE + "      capture: 1abc\n", "must be a variable name", 6),
    ("capture-reserved-name", BASE + "      capture: item\n", "'item' is a reserved variable", 6),
    (
        "write-file-without-path",
        BASE + "    - write_file:\n        content: hi\n",
        "write_file: missing required key 'path'",
        6,
    ),
    (
        "write-file-empty-path",
        BASE + "    - write_file: {path: ''}\n",
        "path: must not be empty",
        6,
    ),
    ("goal-seek-step", BASE + "    - goal_seek:\n        goal: x\n", "'goal_seek' is not", 6),
    ("foreach-step", BASE + "    - foreach: {input: [1]}\n", "step kind 'foreach' is not", 6),
    ("test-step", BASE + "    - test: {command: t}\n", "step kind 'test' is not supported", 6),
    ("conditional-step", BASE + "      when: ${ok}\n", "conditional steps ('when')", 6),
    (
        "on-failure-bad-step",
        BASE + "      on_failure:\n        - shel: x\n",
        "unknown key 'shel'",
        7,
    ),
    # --- variables ---------------------------------------------------------------------
    ("map-total-in-map", BASE + "    - shell: echo ${map.total}\n", "only in the reduce phase", 6),
    (
        "item-in-setup",
        "name: d\nsetup:\n  - shell: echo ${item.x}\n" + BODY,
        "${item.x}: item variables exist only in the map phase, not in setup",
        3,
    ),
    (
        "item-id-in-reduce",
        BASE + "reduce:\n  - shell: echo ${item_id}\n",
        "not in reduce",
        7,
    ),
    (
        "attempt-in-input",
        BASE.replace("items.json", "gen --try ${attempt}"),
        "not in map.input",
        3,
    ),
    (
        "unknown-map-variable",
        BASE + "reduce:\n  - shell: echo ${map.totl}\n",
        "unknown map variable 'totl' (did you mean 'total'?)",
        7,
    ),
    ("prodigy-other-dotted", BASE + "    - shell: echo ${shell.outputs}\n", "unknown variable", 6),
    # --- error policy --------------------------------------------------------------------
    ("threshold-above-one", BASE + "error_policy:\n  failure_threshold: 1.5\n", "at most 1", 7),
    (
        "on-item-failure-explode",
        BASE + "error_policy:\n  on_item_failure: explode\n",
        "must be one of 'dlq' or 'stop', got 'explode'",
        7,
    ),
    ("negative-max-failures", BASE + "error_policy: {max_failures: -1}\n", "at least 0", 6),
    # --- prodigy spellings gone wrong ------------------------------------------------------
    (
        "timeout-given-twice",
        BASE + "  timeout: 5\n  agent_timeout_secs: 6\n",
        "the map timeout is given twice",
        7,
    ),
    ("retry-given-twice", BASE + "  retry: {}\n  retry_on_failure: 1\n", "retry is given twice", 7),
    ("retry-on-failure-negative", BASE + "  retry_on_failure: -1\n", "number of retries", 6),
    (
        "agent-timeout-unset-var",
        BASE + "  agent_timeout_secs: $T\n",
        "$T names no variable",
        6,
    ),
    ("setup-timeout-text", "name: d\nsetup:\n  timeout: soon\n" + BODY, "number of seconds", 3),
    (
        "commands-form-typo",
        "name: d\nmap:\n  input: x\n  agent_template:\n    comands: []\n",
        "unknown key 'comands' (did you mean 'commands'?)",
        5,
    ),
    (
        "timeout-config-typo",
        BASE + "  timeout_config:\n    agent_timout_secs: 5\n",
        "did you mean 'agent_timeout_secs'?",
        7,
    ),
    (
        "policy-shortcut-twice",
        BASE + "max_failures: 1\nerror_policy: {max_failures: 2}\n",
        "max_failures is given twice",
        6,
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [pytest.param(text, fragment, line, id=name) for name, text, fragment, line in CASES],
)
def test_bad_workflow_is_refused_at_its_line(text: str, fragment: str, line: int) -> None:
    # When the workflow is loaded
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, path="wf.yml")
    # Then the error names the file and the line, says what is wrong, and exits 2
    error = caught.value
    assert fragment in str(error)
    assert error.line == line
    column = f"{error.column}:" if error.column is not None else ""  # YAML syntax errors
    assert str(error).startswith(f"wf.yml:{line}:{column} ")
    assert error.path == "wf.yml"
    assert error.exit_code == 2


def test_the_table_is_large_and_its_ids_unique() -> None:
    names = [name for name, *_ in CASES]
    assert len(names) >= 30
    assert len(set(names)) == len(names)


def test_every_error_is_listed_one_per_line_in_line_order() -> None:
    text = BASE + "  max_parallel: 0\n  timeout: -1\nbad: 1\n"
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, path="wf.yml")
    lines = str(caught.value).splitlines()
    assert lines == [
        "wf.yml:6: map.max_parallel: must be at least 1",
        "wf.yml:7: map.timeout: must be greater than 0",
        "wf.yml:8: unknown key 'bad'",
    ]
    assert caught.value.key == "map.max_parallel"


def test_a_misspelt_step_kind_is_reported_once() -> None:
    # Given a step whose only key is a typo of `shell`
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(BASE + "    - shel: ls\n", path="wf.yml")
    # Then the did-you-mean is the one message (no "needs exactly one kind" echo)
    assert str(caught.value).count("\n") == 0
    assert caught.value.key == "map.agent_template[1]"


def test_an_error_inside_prodigys_commands_form_names_the_key_as_written() -> None:
    text = "name: d\nmap:\n  input: x\n  agent_template:\n    commands:\n      - shell: a\n"
    text += "        timeout: 0\n"
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, path="wf.yml")
    assert caught.value.line == 7
    assert caught.value.key == "map.agent_template.commands[0].timeout"
