"""prodigy's keys and forms that were refused, and the loader checks of issue 13.

Each test holds the minimal YAML that shows one point: a prodigy key that now means what
it means in prodigy or loads with a warning naming it and its line (point 3), the same
setting given twice alike (point 3), ``max_failures`` reached (point 5), placeholders in
prompts that nothing fills in (point 6), YAML syntax errors with their column and a
quoting hint (point 7), and the compatibility table of docs/workflow.md (point 10).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mapwise.domain.policy import evaluate_error_policy
from mapwise.errors import WorkflowError
from mapwise.workflow import LoadedWorkflow, parse_workflow
from mapwise.workflow.model import ErrorPolicy, OnItemFailure
from mapwise.workflow.prodigy import (
    IGNORED_MAP_KEYS,
    IGNORED_POLICY_KEYS,
    IGNORED_TIMEOUT_CONFIG_KEYS,
    IGNORED_TOP_KEYS,
    MAP_KEY_NOTES,
    POLICY_SHORTCUTS,
)
from mapwise.workflow.prodigy_steps import (
    GOES_ON_MAPPING,
    GOES_ON_TEXT,
    HANDLER_CONFIG_KEYS,
    IGNORE_ERRORS,
    IGNORED,
    IGNORED_STEP_KEYS,
    NO_STEP_RETRY,
    STEP_KEY_NOTES,
    UNSUPPORTED_KINDS,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "workflow.md"

# lines 1-5; a step's keys go on line 6 and after
HEAD = """\
name: p
map:
  input: items.json
  agent_template:
    - shell: "echo ${item}"
"""


def load(text: str) -> LoadedWorkflow:
    return parse_workflow(text, path="wf.yml")


def refused(text: str) -> WorkflowError:
    with pytest.raises(WorkflowError) as caught:
        load(text)
    return caught.value


# -- point 3: a step's prodigy keys ------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("retry_config", "{max_attempts: 3}"),
        ("retry", "{attempts: 3, backoff: fixed}"),
        ("on_exit_code", "{1: {shell: 'echo one'}}"),
    ],
)
def test_a_steps_prodigy_key_loads_with_a_warning_naming_it_and_its_line(
    key: str, value: str
) -> None:
    # Given a step with a key prodigy's MapReduce phases never act on
    loaded = load(HEAD + f"      {key}: {value}\n")
    # Then the workflow loads, and the one warning names the key, its line and the reason
    assert loaded.warnings == (f"wf.yml:6: map.agent_template[0].{key}: {STEP_KEY_NOTES[key]}",)
    assert loaded.workflow.map.retry.max_attempts == 1  # a step's retry is not the item's


def test_a_steps_name_is_its_label_as_in_prodigy() -> None:
    loaded = load(HEAD + "      name: greet the item\n")
    step = loaded.workflow.map.agent_template[0]
    assert (step.name, step.describe(), loaded.warnings) == (
        "greet the item",
        "greet the item",
        (),
    )
    assert load(HEAD).workflow.map.agent_template[0].describe() == "shell: echo ${item}"


def test_map_on_item_failure_is_ignored_with_a_warning_as_prodigy_ignores_it() -> None:
    loaded = load(HEAD + "  on_item_failure: stop\n")
    assert loaded.warnings == (
        f"wf.yml:6: map.on_item_failure: {MAP_KEY_NOTES['on_item_failure']}",
    )
    assert loaded.workflow.error_policy.on_item_failure is OnItemFailure.DLQ


def test_top_level_error_collection_warns_instead_of_a_wrong_did_you_mean() -> None:
    loaded = load(HEAD + "error_collection: aggregate\n")
    assert loaded.warnings == (f"wf.yml:6: error_collection: {IGNORED}",)


@pytest.mark.parametrize(("value", "stops"), [("false", True), ("true", False)])
def test_continue_on_failure_false_stops_at_the_first_failed_item(value: str, stops: bool) -> None:
    # prodigy: `!continue_on_failure && failed > 0` stops (error_policy.rs)
    for text in (
        HEAD + f"continue_on_failure: {value}\n",
        HEAD + f"error_policy:\n  continue_on_failure: {value}\n",
    ):
        loaded = load(text)
        expected = OnItemFailure.STOP if stops else OnItemFailure.DLQ
        assert loaded.workflow.error_policy.on_item_failure is expected
        assert loaded.warnings == ()


def test_continue_on_failure_must_be_true_or_false() -> None:
    error = refused(HEAD + "continue_on_failure: sometimes\n")
    assert (error.line, error.key) == (6, "continue_on_failure")
    assert "expected true or false" in str(error)


# -- point 3: on_failure in each of prodigy's forms ---------------------------------------


def test_on_failure_true_loads_without_handlers_and_warns() -> None:
    loaded = load(HEAD + "      on_failure: true\n")
    assert loaded.workflow.map.agent_template[0].on_failure == ()
    assert loaded.warnings == (f"wf.yml:6: map.agent_template[0].on_failure: {IGNORE_ERRORS}",)


def test_on_failure_false_is_no_handler_as_in_prodigy() -> None:
    loaded = load(HEAD + "      on_failure: false\n")
    assert (loaded.workflow.map.agent_template[0].on_failure, loaded.warnings) == ((), ())


def test_on_failure_as_a_command_is_a_shell_or_a_claude_step() -> None:
    # prodigy reads a command that starts with "/" as a claude slash command
    shell = load(HEAD + '      on_failure: "git checkout ."\n')
    claude = load(HEAD + '      on_failure: "/fix ${item}"\n')
    assert shell.workflow.map.agent_template[0].on_failure[0].shell == "git checkout ."
    assert claude.workflow.map.agent_template[0].on_failure[0].claude == "/fix ${item}"
    assert shell.warnings == (f"wf.yml:6: map.agent_template[0].on_failure: {GOES_ON_TEXT}",)


def test_on_failure_as_a_list_of_commands() -> None:
    loaded = load(HEAD + "      on_failure:\n        - git stash\n        - /diagnose\n")
    handlers = loaded.workflow.map.agent_template[0].on_failure
    assert [(h.shell, h.claude) for h in handlers] == [("git stash", None), (None, "/diagnose")]
    assert loaded.warnings == (f"wf.yml:6: map.agent_template[0].on_failure: {GOES_ON_TEXT}",)


def test_on_failure_as_a_list_of_steps_is_mapwises_own_form_without_warnings() -> None:
    loaded = load(HEAD + "      on_failure:\n        - shell: git stash\n")
    assert loaded.workflow.map.agent_template[0].on_failure[0].shell == "git stash"
    assert loaded.warnings == ()


def test_a_handler_object_with_max_attempts_and_fail_workflow_true() -> None:
    # Given prodigy's test-and-debug handler (fail_workflow: true is mapwise's meaning)
    text = HEAD + (
        "      on_failure:\n"
        '        claude: "/debug ${item}"\n'
        "        max_attempts: 3\n"
        "        fail_workflow: true\n"
    )
    loaded = load(text)
    # Then the handler is one claude step; only max_attempts is warned about
    assert loaded.workflow.map.agent_template[0].on_failure[0].claude == "/debug ${item}"
    assert loaded.warnings == (
        f"wf.yml:8: map.agent_template[0].on_failure.max_attempts: {NO_STEP_RETRY}",
    )


def test_a_handler_without_fail_workflow_true_warns_that_prodigy_would_go_on() -> None:
    implicit = load(HEAD + "      on_failure:\n        shell: git stash\n")
    explicit = load(
        HEAD + "      on_failure:\n        shell: git stash\n        fail_workflow: false\n"
    )
    assert implicit.warnings == (f"wf.yml:6: map.agent_template[0].on_failure: {GOES_ON_MAPPING}",)
    assert explicit.warnings == (
        f"wf.yml:8: map.agent_template[0].on_failure.fail_workflow: {GOES_ON_MAPPING}",
    )


def test_a_detailed_handlers_continue_on_error_and_capture_are_warned() -> None:
    text = HEAD + (
        "      on_failure:\n"
        "        fail_workflow: true\n"
        "        capture: {log: handler_output}\n"
        "        commands:\n"
        "          - shell: rollback\n"
        "            continue_on_error: true\n"
        "          - shell: notify\n"
    )
    loaded = load(text)
    handlers = loaded.workflow.map.agent_template[0].on_failure
    assert [h.shell for h in handlers] == ["rollback", "notify"]
    assert loaded.warnings == (
        f"wf.yml:8: map.agent_template[0].on_failure.capture: {IGNORED}",
        "wf.yml:11: map.agent_template[0].on_failure.commands[0].continue_on_error: "
        "ignored: on_failure steps stop at the first that fails",
    )


# -- point 3: the same setting twice --------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(HEAD + "max_failures: 2\nerror_policy: {max_failures: 2}\n", id="shortcut"),
        pytest.param(
            HEAD + "  error_policy: {max_failures: 2}\nerror_policy: {max_failures: 2}\n",
            id="error-policy-in-map-and-top",
        ),
    ],
)
def test_the_same_policy_given_twice_alike_loads(text: str) -> None:
    loaded = load(text)
    assert (loaded.workflow.error_policy.max_failures, loaded.warnings) == (2, ())


def test_retry_spellings_that_agree_load_as_one_policy() -> None:
    text = HEAD + "  retry_on_failure: 2\n  retry_config: {max_attempts: 3, backoff: exponential}\n"
    assert load(text).workflow.map.retry.max_attempts == 3


def test_capture_and_capture_output_naming_the_same_variable_load() -> None:
    text = HEAD + "      capture: out\n      capture_output: out\n"
    assert load(text).workflow.map.agent_template[0].capture == "out"


def test_setup_capture_outputs_agreeing_with_the_steps_capture_loads() -> None:
    text = (
        "name: p\nsetup:\n  commands:\n    - shell: git rev-parse HEAD\n      capture: sha\n"
        "  capture_outputs: {sha: 0}\n" + HEAD.removeprefix("name: p\n")
    )
    assert load(text).workflow.setup.commands[0].capture == "sha"


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [
        (HEAD + "max_failures: 1\nerror_policy: {max_failures: 2}\n", "differently", 6),
        (HEAD + "  retry_on_failure: 1\n  retry_config: {max_attempts: 3}\n", "differently", 7),
        (HEAD + "      capture: a\n      capture_output: b\n", "not both", 7),
    ],
)
def test_the_same_setting_given_twice_differently_is_still_an_error(
    text: str, fragment: str, line: int
) -> None:
    error = refused(text)
    assert fragment in str(error)
    assert error.line == line


# -- point 5: max_failures as prodigy counts it ---------------------------------------------


@pytest.mark.parametrize(
    ("max_failures", "dlq", "stops"),
    [(2, 1, False), (2, 2, True), (2, 3, True), (1, 1, True), (0, 1, True)],
)
def test_max_failures_stops_once_the_dlq_holds_that_many(
    max_failures: int, dlq: int, stops: bool
) -> None:
    # prodigy: `metrics.failed >= max_failures` (src/cook/workflow/error_policy.rs)
    policy = ErrorPolicy(max_failures=max_failures)
    verdict = evaluate_error_policy(policy, dlq_count=dlq, finished_count=dlq, new_dlq=1)
    assert verdict.stop is stops
    if stops:
        assert f"reached error_policy.max_failures ({max_failures})" in verdict.reason


def test_max_failures_zero_waits_for_a_failure() -> None:
    policy = ErrorPolicy(max_failures=0)
    verdict = evaluate_error_policy(policy, dlq_count=0, finished_count=5, new_dlq=0)
    assert not verdict.stop


# -- point 6: placeholders in prompts -----------------------------------------------------------


def test_an_item_style_name_that_cannot_resolve_in_a_prompt_is_an_error() -> None:
    error = refused(HEAD + '    - claude: "/fix ${item_json}"\n')
    assert (error.line, error.key) == (6, "map.agent_template[1].claude")
    assert "${item_json}: no such item variable (${item} is the item as JSON)" in str(error)


def test_an_unknown_name_in_a_prompt_is_a_warning() -> None:
    loaded = load(HEAD + '    - codex: "/fix ${item} for $TEAM"\n')
    assert loaded.warnings == (
        "wf.yml:6: map.agent_template[1].codex: $TEAM is neither an env variable nor a "
        "capture: the agent gets it as written (no shell reads a prompt)",
    )


def test_env_variables_and_captures_in_a_prompt_are_fine() -> None:
    text = (
        "name: p\nenv: {TEAM: core}\nsetup:\n  - shell: date\n    capture: today\n"
        + HEAD.removeprefix("name: p\n")
        + "      capture: said\n"
        + '    - claude: "/fix ${item} for ${TEAM} on ${today} after ${said} (${item_id})"\n'
    )
    assert load(text).warnings == ()


def test_a_shell_step_leaves_unknown_names_to_the_shell_silently() -> None:
    assert load(HEAD + '    - shell: "echo ${HOME} ${item_count:-0}"\n').warnings == ()


# -- point 7: YAML syntax errors ------------------------------------------------------------------


def test_a_yaml_syntax_error_keeps_the_parsers_line_and_column() -> None:
    error = refused("name: p\nmap: [1,\n")
    assert (error.line, error.column) == (3, 1)
    assert str(error).startswith("wf.yml:3:1: YAML syntax error: ")


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("    - shell: echo a: b", "- shell: 'echo a: b'"),
        ('    - shell: echo "id ${item.id}: ok"', "- shell: 'echo \"id ${item.id}: ok\"'"),
        ("    - shell: echo it's: done  # note", '- shell: "echo it\'s: done"'),
    ],
)
def test_an_unquoted_value_holding_colon_space_gets_the_line_rewritten(
    line: str, hint: str
) -> None:
    # Given a value with ": " in it, not quoted
    error = refused(HEAD.replace('    - shell: "echo ${item}"', line))
    # Then the error names the line and column, and shows the line quoted
    assert error.line == 5
    assert error.column is not None and error.column > len("    - shell:")
    assert "mapping values are not allowed here" in str(error)
    assert str(error).endswith(f"quote a value that holds ': ', as in: {hint}")


# -- point 10: the compatibility table names every key the loader knows ---------------------------


def _table() -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("### Every key of prodigy's format")
    return text[start : text.index("\n## ", start)]


def test_the_compatibility_table_names_every_prodigy_key_the_loader_knows() -> None:
    table = _table()
    known = (
        IGNORED_TOP_KEYS
        | set(POLICY_SHORTCUTS)
        | IGNORED_POLICY_KEYS
        | IGNORED_MAP_KEYS
        | set(MAP_KEY_NOTES)
        | IGNORED_TIMEOUT_CONFIG_KEYS
        | IGNORED_STEP_KEYS
        | set(STEP_KEY_NOTES)
        | HANDLER_CONFIG_KEYS
        | set(UNSUPPORTED_KINDS)
    )
    missing = sorted(key for key in known if not re.search(rf"`{key}\b", table))
    assert missing == []
