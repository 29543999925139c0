"""Loading workflow files: mapwise's own form, prodigy's spellings, and the file itself."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapwise.errors import WorkflowError
from mapwise.workflow import LoadedWorkflow, load_workflow, parse_workflow
from mapwise.workflow.locate import dotted
from mapwise.workflow.model import Backoff, OnItemFailure
from mapwise.workflow.prodigy import IGNORED_TOP_KEYS, POLICY_SHORTCUTS
from mapwise.workflow.prodigy_steps import GOES_ON_MAPPING, NO_STEP_RETRY

# A complete workflow using every section, in mapwise's form.
FULL_EXAMPLE = """\
name: fix-lint-findings
mode: mapreduce
env: { REPORT_DIR: .reports }
setup:
  - shell: "ruff check --output-format json . > findings.json || true"
map:
  input: findings.json
  json_path: "$[*]"
  filter: "code in ['F401','E501'] && is_not_null(filename)"
  sort_by: "filename ASC, location.row DESC NULLS LAST"
  distinct: "filename"
  offset: 0
  max_items: 50
  id: "${item.filename}"
  max_parallel: 8
  timeout: 600
  retry: { max_attempts: 3, backoff: exponential, initial_delay: 1, max_delay: 60 }
  agent_template:
    - shell: "ruff check --fix '${item.filename}'"
      timeout: 120
      capture: fix_output
    - claude: "/fix-lint --file ${item.filename} --code ${item.code}"
      on_failure:
        - shell: "git checkout -- '${item.filename}'"
reduce:
  - shell: "echo fixed ${map.successful}/${map.total}, failed ${map.failed}"
error_policy:
  on_item_failure: dlq
  max_failures: 10
  failure_threshold: 0.3
"""

# Modelled on prodigy's examples/mapreduce-json-input.yml: deprecated `commands:` forms,
# a here-document in setup, and `timeout_per_agent`.
PRODIGY_JSON_INPUT = """\
# Example: MapReduce workflow using JSON file as input
name: process-work-items
mode: mapreduce

setup:
  - shell: |
      cat > work-items.json <<EOF
      {"items": [{"id": 1, "file": "src/main.rs", "task": "add-types"}]}
      EOF

map:
  input: "work-items.json"
  json_path: "$.items[*]"
  agent_template:
    commands:
      - shell: 'echo "Processing item ${item.id}: ${item.task} for ${item.file}"'
      - shell: |
          sleep 1
          echo "Completed ${item.task} on ${item.file}"
  max_parallel: 3
  timeout_per_agent: 60s

reduce:
  commands:
    - shell: echo "Processed ${map.total} items"
    - shell: 'echo "Successful: ${map.successful}, Failed: ${map.failed}"'
    - shell: rm -f work-items.json
"""

# Modelled on prodigy's workflows/book-docs-drift.yml and tests/minimal-mapreduce.yml,
# shell steps only: agent_timeout_secs, commit_required, on_failure as one step,
# error_policy extras and a merge block. prodigy always runs items in worktrees, so
# commit_required needs the `workspace: worktree` mapwise asks for (at the end, to keep
# the lines of the warnings).
PRODIGY_DRIFT = """\
name: book-docs-drift-detection
mode: mapreduce

setup:
  - shell: "mkdir -p .prodigy/book-analysis"

map:
  input: "workflows/data/book-chapters.json"
  json_path: "$.chapters[*]"

  agent_template:
    - shell: "echo '${item.title}' > out-${item.id}.txt"
      commit_required: true
    - shell: git add out-${item.id}.txt
      on_failure:
        shell: "echo could not add ${item.id}"
        max_attempts: 2
        fail_workflow: false

  max_parallel: 3
  agent_timeout_secs: 300

reduce:
  - shell: "cd book && mdbook build"
    on_failure:
      shell: "echo build failed"

error_policy:
  on_item_failure: dlq
  continue_on_failure: true
  max_failures: 2
  error_collection: aggregate

merge:
  - shell: "rm -rf .prodigy/book-analysis"
  - shell: "git fetch origin"

workspace: worktree
"""

# Modelled on prodigy's workflows/mapreduce-env-example.yml and its timeout and
# backoff docs: env numbers, secrets, profiles, setup as {commands, timeout: $VAR},
# timeout_config, capture_output, and retry_config in error_policy.
PRODIGY_ENV = """\
name: mapreduce-env-example
mode: mapreduce

env:
  PROJECT_NAME: "example-project"
  MAX_WORKERS: 5
  SETUP_TIMEOUT: "120"
  DEBUG_MODE: false

secrets:
  API_TOKEN:
    provider: env
    key: "GITHUB_TOKEN"

profiles:
  development:
    DEBUG_MODE: "true"

setup:
  timeout: $SETUP_TIMEOUT
  commands:
    - shell: "echo Starting $PROJECT_NAME workflow"
    - shell: "git rev-parse HEAD"
      capture_output: "commit_hash"
      capture_format: "string"

map:
  input: "items.json"
  json_path: "$.items[*]"
  max_parallel: ${MAX_WORKERS}
  timeout_config:
    agent_timeout_secs: 600
    timeout_policy: hybrid
    cleanup_grace_period_secs: 30
  agent_template:
    - shell: "echo Processing ${item.name} for project $PROJECT_NAME"
      capture_output: true
    - shell: "timeout 60s ./process.sh ${item.path}"
      on_failure:
        - shell: "echo retry later ${item.name}"

reduce:
  - shell: "echo Processed ${map.successful}/${map.total} items"

error_policy:
  on_item_failure: dlq
  failure_threshold: 0.2
  retry_config:
    max_attempts: 3
    backoff:
      type: linear
      initial: 2s
    max_delay: 1m
    jitter: true
"""


def test_the_spec_example_loads_as_written() -> None:
    loaded = parse_workflow(FULL_EXAMPLE, path="wf.yml")
    workflow = loaded.workflow
    assert workflow.name == "fix-lint-findings"
    assert workflow.env == {"REPORT_DIR": ".reports"}
    assert [s.shell for s in workflow.setup.commands] == [
        "ruff check --output-format json . > findings.json || true"
    ]
    assert workflow.map.max_parallel == 8
    assert workflow.map.timeout == 600
    assert workflow.map.retry.max_attempts == 3
    assert workflow.map.retry.backoff is Backoff.EXPONENTIAL
    assert workflow.map.agent_template[0].capture == "fix_output"
    assert workflow.map.agent_template[1].kind == "claude"
    assert workflow.map.agent_template[1].on_failure[0].shell is not None
    assert workflow.error_policy.failure_threshold == 0.3
    assert loaded.warnings == ()


def test_prodigy_json_input_example_is_normalised() -> None:
    loaded = parse_workflow(PRODIGY_JSON_INPUT, path="wf.yml")
    workflow = loaded.workflow
    assert len(workflow.setup.commands) == 1
    assert [s.kind for s in workflow.map.agent_template] == ["shell", "shell"]
    assert workflow.map.timeout == 60
    assert workflow.map.max_parallel == 3
    assert len(workflow.reduce) == 3
    assert loaded.warnings == ()


def test_prodigy_drift_example_loads_with_warnings_naming_ignored_keys() -> None:
    loaded = parse_workflow(PRODIGY_DRIFT, path="wf.yml")
    workflow = loaded.workflow
    # Then the prodigy spellings became mapwise's
    assert workflow.map.timeout == 300
    assert workflow.map.agent_template[1].on_failure[0].shell == "echo could not add ${item.id}"
    assert workflow.reduce[0].on_failure[0].shell == "echo build failed"
    assert workflow.error_policy.on_item_failure is OnItemFailure.DLQ
    assert workflow.error_policy.max_failures == 2
    # And every ignored key is named with its line, in file order
    assert workflow.map.agent_template[0].commit_required
    # (continue_on_failure: true is prodigy's default and mapwise's behaviour: no warning)
    assert loaded.warnings == (
        f"wf.yml:17: map.agent_template[1].on_failure.max_attempts: {NO_STEP_RETRY}",
        f"wf.yml:18: map.agent_template[1].on_failure.fail_workflow: {GOES_ON_MAPPING}",
        f"wf.yml:25: reduce[0].on_failure: {GOES_ON_MAPPING}",
        "wf.yml:32: error_policy.error_collection: prodigy key not supported by mapwise; ignored",
    )
    # And the merge block (worktree mode) runs after reduce, in mapwise's shape
    assert workflow.merge is not None
    assert [step.shell for step in workflow.merge.commands] == [
        "rm -rf .prodigy/book-analysis",
        "git fetch origin",
    ]


def test_prodigy_env_example_resolves_variables_timeouts_and_retry() -> None:
    loaded = parse_workflow(PRODIGY_ENV, path="wf.yml")
    workflow = loaded.workflow
    # env values are text, as a shell sees them
    assert workflow.env["MAX_WORKERS"] == "5"
    assert workflow.env["DEBUG_MODE"] == "false"
    assert workflow.resolved_max_parallel() == 5
    # setup as {commands, timeout: $VAR}, capture_output -> capture
    assert workflow.setup.timeout == 120
    assert workflow.setup.commands[1].capture == "commit_hash"
    # timeout_config.agent_timeout_secs -> map.timeout; capture_output: true -> prodigy's
    # "shell.output" on a shell step
    assert workflow.map.timeout == 600
    assert workflow.map.agent_template[0].capture == "shell.output"
    # error_policy.retry_config -> map.retry, durations in seconds
    retry = workflow.map.retry
    assert (retry.max_attempts, retry.backoff) == (3, Backoff.LINEAR)
    assert (retry.initial_delay, retry.max_delay) == (2, 60)
    assert workflow.error_policy.failure_threshold == 0.2
    ignored = [w.split(": ")[1] for w in loaded.warnings]
    assert ignored == [
        "secrets",
        "profiles",
        "map.timeout_config.timeout_policy",
        "map.timeout_config.cleanup_grace_period_secs",
        "error_policy.retry_config.jitter",
    ]
    assert loaded.warnings[0].startswith("wf.yml:10: secrets: ")


def test_prodigy_retry_on_failure_counts_retries_not_attempts() -> None:
    text = PRODIGY_JSON_INPUT.replace(
        "  max_parallel: 3\n", "  max_parallel: 3\n  retry_on_failure: 2\n"
    )
    assert parse_workflow(text, path="wf.yml").workflow.map.retry.max_attempts == 3


def test_prodigy_top_level_policy_shortcuts_move_into_error_policy() -> None:
    text = PRODIGY_JSON_INPUT + "on_item_failure: stop\nmax_failures: 4\n"
    policy = parse_workflow(text, path="wf.yml").workflow.error_policy
    assert (policy.on_item_failure, policy.max_failures) == (OnItemFailure.STOP, 4)


def test_prodigy_setup_capture_outputs_sets_capture_on_that_step() -> None:
    text = PRODIGY_ENV.replace(
        '      capture_output: "commit_hash"\n      capture_format: "string"\n', ""
    ).replace("  timeout: $SETUP_TIMEOUT\n", "  timeout: 90\n  capture_outputs:\n    sha: 1\n")
    setup = parse_workflow(text, path="wf.yml").workflow.setup
    assert setup.timeout == 90
    assert setup.commands[1].capture == "sha"


def test_prodigy_fibonacci_backoff_falls_back_to_exponential_with_a_warning() -> None:
    text = PRODIGY_JSON_INPUT + "error_policy:\n  retry_config:\n    backoff: fibonacci\n"
    loaded = parse_workflow(text, path="wf.yml")
    assert loaded.workflow.map.retry.backoff is Backoff.EXPONENTIAL
    assert loaded.warnings == (
        "wf.yml:30: error_policy.retry_config.backoff: "
        "fibonacci backoff not supported by mapwise; using exponential",
    )


def test_prodigy_handler_form_of_on_failure_and_secret_env_values() -> None:
    # Given prodigy's {commands, strategy} handler and an env value written as a secret
    text = FULL_EXAMPLE.replace(
        "env: { REPORT_DIR: .reports }",
        "env:\n  TOKEN: {secret: true, value: abc}",
    ).replace(
        "      on_failure:\n        - shell:",
        "      on_failure:\n        strategy: recovery\n        commands:\n          - shell:",
    )
    loaded = parse_workflow(text, path="wf.yml")
    # Then the handler's commands are the on_failure steps, the secret's value is used
    step = loaded.workflow.map.agent_template[1]
    assert [s.shell for s in step.on_failure] == ["git checkout -- '${item.filename}'"]
    assert loaded.workflow.env == {"TOKEN": "abc"}
    assert loaded.warnings == (
        "wf.yml:4: env.TOKEN.secret: prodigy secret masking not supported; value used",
        f"wf.yml:24: map.agent_template[1].on_failure: {GOES_ON_MAPPING}",
        "wf.yml:25: map.agent_template[1].on_failure.strategy: "
        "prodigy key not supported by mapwise; ignored",
    )


def test_a_capture_that_hides_an_env_variable_is_a_warning() -> None:
    text = FULL_EXAMPLE.replace("capture: fix_output", "capture: REPORT_DIR")
    loaded = parse_workflow(text, path="wf.yml")
    assert loaded.warnings == (
        "wf.yml:21: map.agent_template[0].capture: "
        "capture 'REPORT_DIR' hides the env variable of the same name",
    )


def test_bare_shell_variables_are_left_to_the_shell() -> None:
    # `$item` in a shell loop and ${HOME} are the shell's, in any phase
    loop = "for item in a b; do echo $item $attempt ${HOME}; done"
    text = FULL_EXAMPLE.replace("setup:\n", f"setup:\n  - shell: {loop!r}\n")
    assert len(parse_workflow(text, path="wf.yml").workflow.setup.commands) == 2


def test_load_workflow_records_source_hash_and_absolute_path(tmp_path: Path) -> None:
    # Given a workflow file with a warning in it
    path = tmp_path / "flows" / "wf.yml"
    path.parent.mkdir()
    data = (PRODIGY_DRIFT).encode()
    path.write_bytes(data)
    # When it is loaded by a relative path
    loaded = load_workflow(path)
    # Then the text, its digest and the absolute path are on record; warnings did not fail it
    assert isinstance(loaded, LoadedWorkflow)
    assert loaded.source == PRODIGY_DRIFT
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert loaded.path == path.absolute()
    assert loaded.path.is_absolute()
    assert loaded.base_dir == path.parent.absolute()
    assert loaded.warnings and all(w.startswith(f"{path}:") for w in loaded.warnings)


def test_load_workflow_accepts_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "wf.yml").write_text(FULL_EXAMPLE)
    monkeypatch.chdir(tmp_path)
    loaded = load_workflow("wf.yml")
    assert loaded.path == tmp_path / "wf.yml"
    assert loaded.base_dir == tmp_path


def test_parse_workflow_hashes_the_utf8_text() -> None:
    loaded = parse_workflow(FULL_EXAMPLE, path="x/wf.yml")
    assert loaded.sha256 == hashlib.sha256(FULL_EXAMPLE.encode()).hexdigest()
    assert loaded.base_dir.name == "x"


def test_a_missing_file_is_a_workflow_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(WorkflowError) as caught:
        load_workflow(missing)
    assert str(caught.value).startswith(f"{missing}: cannot read the workflow file")
    assert caught.value.exit_code == 2


def test_a_directory_is_a_workflow_error(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="cannot read the workflow file"):
        load_workflow(tmp_path)


def test_a_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "wf.yml"
    path.write_bytes(b"name: demo\nmap:\n  input: caf\xe9.json\n")
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    assert "not UTF-8 text (byte 0xe9" in str(caught.value)
    assert caught.value.line == 3


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "wf.yml"
    path.write_bytes(b"\xef\xbb\xbf" + FULL_EXAMPLE.encode())
    assert load_workflow(path).workflow.name == "fix-lint-findings"


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wf.yml"
    path.write_bytes(b"")
    with pytest.raises(WorkflowError, match="is empty"):
        load_workflow(path)


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        ((), ""),
        (("map",), "map"),
        (("map", "agent_template", 1, "timeout"), "map.agent_template[1].timeout"),
        (("reduce", 0), "reduce[0]"),
    ],
)
def test_dotted_keys(loc: tuple[str | int, ...], text: str) -> None:
    assert dotted(loc) == text


@settings(max_examples=40, deadline=None)
@given(
    keys=st.lists(st.sampled_from(sorted(IGNORED_TOP_KEYS)), unique=True, min_size=1, max_size=5)
)
def test_each_ignored_prodigy_key_warns_at_its_own_line(keys: list[str]) -> None:
    # Given a valid workflow followed by prodigy-only top-level keys, one per line
    start = FULL_EXAMPLE.count("\n") + 1
    text = FULL_EXAMPLE + "".join(f"{key}: true\n" for key in keys)
    # When it is loaded
    loaded = parse_workflow(text, path="wf.yml")
    # Then it loads, and each key gets one warning naming it and its line
    expected = tuple(
        f"wf.yml:{start + i}: {key}: prodigy key not supported by mapwise; ignored"
        for i, key in enumerate(keys)
    )
    assert loaded.warnings == expected


@settings(max_examples=40, deadline=None)
@given(key=st.from_regex(r"[a-z][a-z_]{2,12}", fullmatch=True))
def test_any_other_unknown_top_level_key_is_an_error_at_its_line(key: str) -> None:
    known = {"name", "mode", "env", "setup", "map", "reduce", "error_policy"}
    known |= IGNORED_TOP_KEYS | set(POLICY_SHORTCUTS)
    if key in known:
        return
    text = FULL_EXAMPLE + f"{key}: 1\n"
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, path="wf.yml")
    assert caught.value.line == FULL_EXAMPLE.count("\n") + 1
    assert f"unknown key {key!r}" in str(caught.value)


@settings(max_examples=40, deadline=None)
@given(value=st.integers(max_value=0))
def test_max_parallel_below_one_is_refused_at_its_line(value: int) -> None:
    text = FULL_EXAMPLE.replace("max_parallel: 8", f"max_parallel: {value}")
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, path="wf.yml")
    assert caught.value.line == 15
    assert caught.value.key == "map.max_parallel"
