"""The workflow side of ``workspace: worktree``: the key in its two forms, its errors at
their lines, ``commit_required``, the checks of ``workspace.setup``, and ``validate``.

Nothing here touches git: the model describes a job and never looks at a repository.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers.project import run_main
from mapwise.errors import WorkflowError
from mapwise.workflow import parse_workflow
from mapwise.workflow.model import OnConflict, WorkspaceKind, WorkspaceSpec

BASE = """\
name: ws
map:
  input: items.json
  agent_template:
    - shell: echo ${item}
"""


def load(text: str) -> tuple[WorkspaceSpec, tuple[str, ...]]:
    loaded = parse_workflow(text, path="wf.yml")
    return loaded.workflow.workspace, loaded.warnings


def refused(text: str) -> WorkflowError:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, path="wf.yml")
    assert caught.value.exit_code == 2
    return caught.value


# -- the two forms and the defaults ------------------------------------------------------


def test_without_the_key_the_workspace_is_none_with_its_defaults() -> None:
    spec, warnings = load(BASE)
    assert spec == WorkspaceSpec()
    assert spec.kind is WorkspaceKind.NONE
    assert not spec.enabled
    assert (spec.repo, spec.base, spec.setup, spec.on_conflict) == (
        None,
        None,
        (),
        OnConflict.RERUN,
    )
    assert warnings == ()


@pytest.mark.parametrize("written", ["workspace: none", "workspace: {kind: none}", "workspace:"])
def test_workspace_none_changes_nothing(written: str) -> None:
    # Given the same workflow with and without an explicit `workspace: none`
    plain = parse_workflow(BASE, path="wf.yml")
    explicit = parse_workflow(BASE + written + "\n", path="wf.yml")
    # Then the models are equal and nothing is warned about
    assert explicit.workflow == plain.workflow
    assert explicit.warnings == ()


def test_the_short_form_is_the_long_form_with_defaults() -> None:
    short, _ = load(BASE + "workspace: worktree\n")
    long, _ = load(BASE + "workspace:\n  kind: worktree\n")
    assert short == long == WorkspaceSpec(kind=WorkspaceKind.WORKTREE)
    assert short.enabled
    assert short.on_conflict is OnConflict.RERUN


def test_the_long_form_reads_every_key() -> None:
    text = BASE + (
        "workspace:\n"
        "  kind: worktree\n"
        "  repo: ../repo\n"
        "  base: origin/main\n"
        "  on_conflict: dlq\n"
        "  setup:\n"
        "    - shell: ln -s ../venv .venv\n"
        "    - write_file:\n"
        "        path: notes/${item_id}.txt\n"
        "        content: ${item}\n"
    )
    spec, warnings = load(text)
    assert spec.enabled
    assert spec.repo == "../repo"
    assert spec.base == "origin/main"
    assert spec.on_conflict is OnConflict.DLQ
    assert [step.kind for step in spec.setup] == ["shell", "write_file"]
    assert warnings == ()


def test_workspace_setup_steps_take_prodigys_step_spellings() -> None:
    # Given a workspace.setup step with capture_output and a number in its env
    text = BASE + (
        "workspace:\n"
        "  kind: worktree\n"
        "  setup:\n"
        "    - shell: echo hi\n"
        "      capture_output: greeting\n"
        "      env: {PORT: 80}\n"
    )
    spec, _ = load(text)
    # Then they are normalised like any other step
    assert spec.setup[0].capture == "greeting"
    assert spec.setup[0].env == {"PORT": "80"}


def test_other_keys_of_a_workspace_that_is_none_are_warned_about() -> None:
    text = BASE + "workspace:\n  kind: none\n  base: main\n  setup:\n    - shell: ls\n"
    spec, warnings = load(text)
    assert not spec.enabled
    assert warnings == (
        "wf.yml:8: workspace.base: ignored: the workspace kind is none",
        "wf.yml:9: workspace.setup: ignored: the workspace kind is none",
    )


# -- errors at their lines ---------------------------------------------------------------

BAD = [
    (
        "wrong-kind",
        "workspace:\n  kind: wrongkind\n",
        7,
        "workspace.kind",
        "must be one of 'none' or 'worktree', got 'wrongkind'",
    ),
    (
        "short-form-typo",
        "workspace: worktre\n",
        6,
        "workspace",
        "must be one of 'none' or 'worktree', got 'worktre'",
    ),
    (
        "a-number",
        "workspace: 5\n",
        6,
        "workspace",
        "expected worktree, none or a mapping such as {kind: worktree}, got 5",
    ),
    (
        "a-bool",
        "workspace: true\n",
        6,
        "workspace",
        "expected worktree, none or a mapping such as {kind: worktree}, got true",
    ),
    (
        "a-list",
        "workspace: [worktree]\n",
        6,
        "workspace",
        "expected worktree, none or a mapping such as {kind: worktree}, got ['worktree']",
    ),
    (
        "bad-on-conflict",
        "workspace:\n  kind: worktree\n  on_conflict: maybe\n",
        8,
        "workspace.on_conflict",
        "must be one of 'rerun' or 'dlq', got 'maybe'",
    ),
    (
        "misspelt-key",
        "workspace:\n  kind: worktree\n  on_conflcit: dlq\n",
        8,
        "workspace",
        "unknown key 'on_conflcit' (did you mean 'on_conflict'?)",
    ),
    (
        "empty-repo",
        "workspace:\n  kind: worktree\n  repo: ''\n",
        8,
        "workspace.repo",
        "must not be empty",
    ),
    (
        "setup-not-a-list",
        "workspace:\n  kind: worktree\n  setup: ls\n",
        8,
        "workspace.setup",
        "expected a list",
    ),
    (
        "setup-step-without-kind",
        "workspace:\n  kind: worktree\n  setup:\n    - timeout: 5\n",
        9,
        "workspace.setup[0]",
        "exactly one of shell, claude, codex, write_file",
    ),
]


@pytest.mark.parametrize(
    ("extra", "line", "key", "message"),
    [pytest.param(extra, line, key, message, id=name) for name, extra, line, key, message in BAD],
)
def test_a_bad_workspace_is_refused_at_its_line(
    extra: str, line: int, key: str, message: str
) -> None:
    error = refused(BASE + extra)
    assert error.line == line
    assert error.key == key
    assert str(error).startswith(f"wf.yml:{line}: {key}: ")
    assert message in str(error)


@pytest.mark.parametrize(
    ("extra", "line", "key"),
    [
        ("workspace:\n  kind: wrongkind\n", 7, "workspace.kind"),
        ("workspace: 5\n", 6, "workspace"),
        ("workspace:\n  on_conflict: maybe\n", 7, "workspace.on_conflict"),
    ],
)
def test_mapwise_validate_names_the_file_line_and_key_and_exits_2(
    tmp_path: Path, extra: str, line: int, key: str
) -> None:
    # Given a workflow file with a bad workspace
    path = tmp_path / "wf.yml"
    path.write_text(BASE + extra, encoding="utf-8")
    (tmp_path / "items.json").write_text("[1]", encoding="utf-8")
    # When it is validated on the command line
    run = run_main("validate", str(path))
    # Then it exits 2 with file:line: key: and no traceback
    assert run.returncode == 2
    assert f"{path}:{line}: {key}: " in run.stderr
    assert "Traceback" not in run.stderr


# -- commit_required ---------------------------------------------------------------------


def test_commit_required_is_a_key_of_a_step_and_no_longer_warned_about() -> None:
    text = BASE + "      commit_required: true\n    - shell: ls\nworkspace: worktree\n"
    loaded = parse_workflow(text, path="wf.yml")
    steps = loaded.workflow.map.agent_template
    assert [step.commit_required for step in steps] == [True, False]
    assert loaded.warnings == ()


def test_commit_required_without_a_worktree_is_warned_about_at_the_step() -> None:
    # prodigy's workflows use it and run unchanged: without a worktree it is ignored
    _, warnings = load(BASE + "      commit_required: true\n")
    assert warnings == (
        "wf.yml:6: map.agent_template[0].commit_required: ignored: it needs workspace: worktree",
    )


def test_commit_required_outside_the_agent_template_is_warned_about() -> None:
    text = (
        "name: ws\n"
        "setup:\n"
        "  - shell: ls\n"
        "    commit_required: true\n"
        "map:\n"
        "  input: items.json\n"
        "  agent_template:\n"
        "    - shell: a\n"
        "      on_failure:\n"
        "        - shell: b\n"
        "          commit_required: true\n"
        "reduce:\n"
        "  - shell: c\n"
        "    commit_required: true\n"
        "workspace: worktree\n"
    )
    _, warnings = load(text)
    assert warnings == (
        "wf.yml:4: setup[0].commit_required: ignored: outside the map phase",
        "wf.yml:14: reduce[0].commit_required: ignored: outside the map phase",
    )


def test_commit_required_false_needs_no_worktree() -> None:
    loaded = parse_workflow(BASE + "      commit_required: false\n", path="wf.yml")
    assert not loaded.workflow.map.agent_template[0].commit_required
    assert loaded.warnings == ()


def test_prodigys_commands_form_keeps_commit_required_with_its_line() -> None:
    text = (
        "name: ws\n"
        "map:\n"
        "  input: items.json\n"
        "  agent_template:\n"
        "    commands:\n"
        "      - shell: a\n"
        "        commit_required: true\n"
    )
    _, warnings = load(text)
    assert warnings == (
        "wf.yml:7: map.agent_template.commands[0].commit_required: "
        "ignored: it needs workspace: worktree",
    )


def test_other_prodigy_keys_are_still_warned_about() -> None:
    text = BASE + "      id: step-one\nmerge:\n  - shell: git fetch\n"
    _, warnings = load(text)
    assert warnings == (
        "wf.yml:6: map.agent_template[0].id: prodigy key not supported by mapwise; ignored",
        "wf.yml:7: merge: prodigy's merge block runs only with workspace: worktree "
        "(there is no job branch to merge otherwise); ignored",
    )


# -- the placeholders of workspace.setup ------------------------------------------------


def test_workspace_setup_may_use_the_item_env_and_captures() -> None:
    text = (
        "name: ws\n"
        "env: {VENV: /opt/venv}\n"
        "setup:\n"
        "  - shell: git rev-parse HEAD\n"
        "    capture: head\n"
        "map:\n"
        "  input: items.json\n"
        "  agent_template:\n"
        "    - shell: echo ${item}\n"
        "workspace:\n"
        "  kind: worktree\n"
        "  setup:\n"
        "    - shell: ln -s ${VENV} .venv && echo ${item.name} ${item_id} ${item_index} ${head}\n"
        "      env: {ATTEMPT: '${attempt}', JOB: '${job_id}'}\n"
    )
    spec, warnings = load(text)
    assert len(spec.setup) == 1
    assert warnings == ()


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        ("echo ${map.total}", "${map.total}: map results exist only in the reduce phase"),
        ("echo ${map.nope}", "unknown map variable"),
        ("echo ${item_name.x}", "unknown variable"),
    ],
)
def test_workspace_setup_placeholders_are_checked_at_their_line(
    command: str, fragment: str
) -> None:
    text = BASE + f"workspace:\n  kind: worktree\n  setup:\n    - shell: {command}\n"
    error = refused(text)
    assert error.line == 9
    assert error.key == "workspace.setup[0].shell"
    assert fragment in str(error)


def test_a_workspace_setup_capture_may_not_take_a_reserved_name() -> None:
    text = BASE + "workspace:\n  kind: worktree\n  setup:\n    - shell: ls\n      capture: item\n"
    error = refused(text)
    assert error.line == 10
    assert "'item' is a reserved variable name" in str(error)


# -- mapwise validate shows the workspace -------------------------------------------------


def write_project(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "wf.yml"
    path.write_text(BASE + extra, encoding="utf-8")
    (tmp_path / "items.json").write_text(json.dumps(["a", "b"]), encoding="utf-8")
    return path


def _git_repo(folder: Path, tag: str | None = None) -> None:
    """A repository with one commit (and a tag), for validate's repository checks."""
    folder.mkdir(parents=True, exist_ok=True)
    who = ["-c", "user.name=T", "-c", "user.email=t@example.com"]
    for args in (["init", "--quiet"], [*who, "commit", "--quiet", "--allow-empty", "-m", "c"]):
        subprocess.run(["git", *args], cwd=folder, check=True)
    if tag:
        subprocess.run(["git", "tag", tag], cwd=folder, check=True)


def test_validate_shows_a_worktree_workspace_with_its_defaults(tmp_path: Path) -> None:
    _git_repo(tmp_path)
    run = run_main("validate", str(write_project(tmp_path, "workspace: worktree\n")))
    assert run.returncode == 0, run.stderr
    assert (
        "  workspace: worktree of the workflow's repository, base HEAD, on_conflict rerun"
        in run.stdout.splitlines()
    )


def test_validate_shows_the_repo_base_and_on_conflict_given(tmp_path: Path) -> None:
    _git_repo(tmp_path.parent / f"{tmp_path.name}-app", tag="v1.2")
    extra = (
        f"workspace: {{kind: worktree, repo: ../{tmp_path.name}-app, base: v1.2,"
        " on_conflict: dlq}\n"
    )
    run = run_main("validate", str(write_project(tmp_path, extra)))
    assert run.returncode == 0, run.stderr
    assert f"  workspace: worktree of ../{tmp_path.name}-app, base v1.2, on_conflict dlq" in (
        run.stdout
    )


def test_validate_checks_the_repository_as_a_run_would(tmp_path: Path) -> None:
    # Given a worktree workflow in a folder that is no git repository
    run = run_main("validate", str(write_project(tmp_path, "workspace: worktree\n")))
    # Then validate refuses it as run would, exit 2, with no traceback
    assert run.returncode == 2
    assert "not inside a git repository" in run.stderr
    assert "Traceback" not in run.stderr


def test_validate_says_nothing_of_a_workspace_that_is_none(tmp_path: Path) -> None:
    run = run_main("validate", str(write_project(tmp_path, "workspace: none\n")))
    assert run.returncode == 0, run.stderr
    assert "workspace" not in run.stdout
