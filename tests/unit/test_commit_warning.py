"""Issue 13 point 9: an agent template that commits without ``workspace: worktree``.

prodigy always gives each agent a worktree; in mapwise without one, the items' commits
race in one shared checkout. The warning names the fix and the step's line, at
``validate`` and at ``run`` (both load the workflow the same way). The ``merge:`` block
loads in worktree mode and is warned (and dropped) without it.
"""

from __future__ import annotations

import pytest

from mapwise.workflow import LoadedWorkflow, parse_workflow
from mapwise.workflow.commit_checks import SHARED_CHECKOUT, commits_git
from mapwise.workflow.prodigy_merge import NOT_WORKTREE

HEAD = """\
name: p
map:
  input: items.json
  agent_template:
    - shell: "echo ${item}"
"""
GIT_COMMIT_WARNING = SHARED_CHECKOUT.format(what="`git commit`")


def load(text: str) -> LoadedWorkflow:
    return parse_workflow(text, path="wf.yml")


def test_a_shell_step_that_commits_is_warned_with_its_line_and_the_fix() -> None:
    loaded = load(HEAD + "    - shell: git add -A && git commit -m 'fix ${item}'\n")
    assert loaded.warnings == (f"wf.yml:6: map.agent_template[1].shell: {GIT_COMMIT_WARNING}",)
    assert "`workspace: worktree`" in loaded.warnings[0]


def test_a_commit_in_an_on_failure_step_is_warned_too() -> None:
    loaded = load(HEAD + "      on_failure:\n        - shell: git commit -am wip\n")
    assert loaded.warnings == (
        f"wf.yml:7: map.agent_template[0].on_failure[0].shell: {GIT_COMMIT_WARNING}",
    )


def test_commit_required_without_a_worktree_names_the_fix() -> None:
    loaded = load(HEAD + "      commit_required: true\n")
    assert len(loaded.warnings) == 1
    assert loaded.warnings[0].startswith("wf.yml:6: map.agent_template[0].commit_required:")
    assert "workspace: worktree" in loaded.warnings[0]


def test_with_a_worktree_nothing_is_warned() -> None:
    text = (
        HEAD + "    - shell: git commit -am x\n      commit_required: true\nworkspace: worktree\n"
    )
    assert load(text).warnings == ()


def test_commits_in_setup_or_reduce_are_not_the_items_race() -> None:
    text = HEAD + "reduce:\n  - shell: git commit -am summary\n"
    assert load(text).warnings == ()


@pytest.mark.parametrize(
    ("command", "commits"),
    [
        ("git commit -m x", True),
        ("git add . && git commit --amend --no-edit", True),
        ("git -C sub commit -am x", True),
        ("git -c user.name=a commit -m x", True),
        ("git --no-pager commit", True),
        ("git log --grep commit", False),
        ("echo 'gitcommit'", False),
        ("git commit-tree HEAD^{tree}", False),
    ],
)
def test_what_counts_as_git_commit(command: str, commits: bool) -> None:
    assert commits_git(command) is commits


def test_the_merge_block_without_a_worktree_is_warned_and_dropped() -> None:
    loaded = load(HEAD + "merge:\n  - shell: git merge x\n")
    assert loaded.warnings == (f"wf.yml:6: merge: {NOT_WORKTREE}",)
    assert loaded.workflow.merge is None


def test_the_merge_block_loads_in_both_forms_with_a_worktree() -> None:
    listed = load(HEAD + "workspace: worktree\nmerge:\n  - shell: echo ${merge.target_branch}\n")
    assert listed.warnings == ()
    assert listed.workflow.merge is not None
    assert listed.workflow.merge.commands[0].shell == "echo ${merge.target_branch}"
    mapped = load(
        HEAD + "workspace: worktree\nmerge:\n  commands:\n    - shell: 'true'\n  timeout: 10m\n"
    )
    assert mapped.workflow.merge is not None
    assert mapped.workflow.merge.timeout == 600


@pytest.mark.parametrize(
    ("placeholder", "message"),
    [
        ("${merge.nope}", "unknown merge variable"),
        ("${item.id}", "item variables exist only in the map phase"),
        ("${map.total}", "map results exist only in the reduce phase"),
    ],
)
def test_the_merge_blocks_placeholders_are_checked(placeholder: str, message: str) -> None:
    text = HEAD + f"workspace: worktree\nmerge:\n  - shell: echo {placeholder}\n"
    with pytest.raises(Exception, match=message):
        load(text)
