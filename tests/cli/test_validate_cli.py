"""``mapwise validate`` on the points of issue 13, through the real command line code.

``--state-dir`` accepted like every command (and checked as a run checks it), an input
command read after setup, a YAML syntax error with its column and quoting hint, the
warnings of prodigy keys and prompt placeholders, and a prodigy-shaped workflow that
loads with every key named. Each test writes its own minimal workflow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import mapwise
from helpers.project import CliRun, run_main
from mapwise.workflow import load_workflow

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells")


def write(folder: Path, text: str) -> Path:
    path = folder / "wf.yml"
    path.write_text(text, encoding="utf-8")
    return path


def validate(path: Path, *args: str) -> CliRun:
    run = run_main("validate", str(path), *args)
    assert "Traceback" not in run.stderr
    return run


COMMAND_INPUT = """\
name: v
setup:
  - shell: "mkdir -p out"
map:
  input: "ls out"
  agent_template:
    - shell: "echo ${item}"
"""


# -- point 8: --state-dir and an input command ------------------------------------------------


def test_validate_takes_state_dir_and_writes_nothing_there(tmp_path: Path) -> None:
    path = write(tmp_path, COMMAND_INPUT)
    state = tmp_path / "state"

    run = validate(path, "--state-dir", str(state))

    assert run.returncode == 0, run.stderr
    assert "valid" in run.stdout
    assert not state.exists()


def test_validate_refuses_a_state_dir_that_cannot_be_made(tmp_path: Path) -> None:
    # Given a state directory below a file
    path = write(tmp_path, COMMAND_INPUT)
    (tmp_path / "afile").write_text("")
    below = tmp_path / "afile" / "state"

    # When it is validated, and when it is run
    checked = validate(path, "--state-dir", str(below))
    ran = run_main("run", str(path), "--state-dir", str(below))

    # Then both say why, exit 2, and no traceback
    for run in (checked, ran):
        assert run.returncode == 2
        assert f"{tmp_path / 'afile'} is a file" in run.stderr
        assert "Traceback" not in run.stderr


def test_validate_says_an_input_command_runs_after_setup(tmp_path: Path) -> None:
    run = validate(write(tmp_path, COMMAND_INPUT))

    assert run.returncode == 0, run.stderr
    assert "items: the input command 'ls out' runs after setup" in run.stdout
    assert "not a file yet" not in run.stdout
    assert mapwise.validate_workflow(tmp_path / "wf.yml").input_is_command


def test_validate_says_an_input_file_is_not_made_yet(tmp_path: Path) -> None:
    run = validate(write(tmp_path, COMMAND_INPUT.replace('"ls out"', "out/items.json")))

    assert run.returncode == 0, run.stderr
    assert "items: read after setup runs (input 'out/items.json' is not a file yet)" in run.stdout


# -- point 7: YAML syntax errors ----------------------------------------------------------------


def test_a_yaml_syntax_error_shows_line_column_and_how_to_quote(tmp_path: Path) -> None:
    text = 'name: v\nmap:\n  input: x\n  agent_template:\n    - shell: echo "id ${item.id}: ok"\n'
    run = validate(write(tmp_path, text))

    assert run.returncode == 2
    assert f"{tmp_path / 'wf.yml'}:5:33: YAML syntax error: mapping values" in run.stderr
    assert "as in: - shell: 'echo \"id ${item.id}: ok\"'" in run.stderr


# -- point 6: prompts -------------------------------------------------------------------------


def test_a_prompt_with_an_unknown_name_validates_with_a_warning(tmp_path: Path) -> None:
    text = COMMAND_INPUT + '    - claude: "/review ${item} for ${REVIEWER}"\n'
    run = validate(write(tmp_path, text))

    assert run.returncode == 0, run.stderr
    assert (
        "warning: " + f"{tmp_path / 'wf.yml'}:8: map.agent_template[1].claude: ${{REVIEWER}} "
        "is neither an env variable nor a capture"
    ) in run.stderr


def test_a_prompt_with_an_item_variable_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    run = validate(write(tmp_path, COMMAND_INPUT + '    - claude: "/review ${item_json}"\n'))

    assert run.returncode == 2
    assert "${item_json}: no such item variable" in run.stderr


# -- point 3: a prodigy-shaped workflow with the keys that were refused -----------------------

PRODIGY_SHAPED = """\
name: lint-fixes
mode: mapreduce
error_collection: aggregate
max_failures: 2
setup:
  - shell: "printf 'a.py\\\\nb.py\\\\n' > files.txt"
map:
  input: "cat files.txt"
  on_item_failure: dlq
  error_policy:
    max_failures: 2
    continue_on_failure: true
  agent_template:
    - name: lint the file
      shell: "ruff check ${item}"
      retry: {attempts: 2}
      on_exit_code: {1: {shell: "echo findings"}}
      on_failure:
        claude: "/fix ${item}"
        max_attempts: 3
        fail_workflow: true
    - shell: "git add ${item}"
      retry_config: {max_attempts: 2}
      on_failure: true
    - shell: "test -s ${item}"
      on_failure: "echo empty ${item}"
reduce:
  - shell: "echo done"
    on_failure: ["echo failed", "/diagnose"]
"""


def test_a_prodigy_shaped_workflow_validates_naming_each_ignored_key(tmp_path: Path) -> None:
    run = validate(write(tmp_path, PRODIGY_SHAPED))

    assert run.returncode == 0, run.stderr
    warned = [line.split(": ")[2] for line in run.stderr.splitlines()]
    assert warned == [
        "error_collection",
        "map.on_item_failure",
        "map.agent_template[0].retry",
        "map.agent_template[0].on_exit_code",
        "map.agent_template[0].on_failure.max_attempts",
        "map.agent_template[1].retry_config",
        "map.agent_template[1].on_failure",
        "map.agent_template[2].on_failure",
        "reduce[0].on_failure",
    ]
    loaded = load_workflow(tmp_path / "wf.yml").workflow
    assert loaded.error_policy.max_failures == 2
    assert loaded.map.agent_template[0].describe() == "lint the file"
    assert [s.claude for s in loaded.reduce[0].on_failure] == [None, "/diagnose"]
