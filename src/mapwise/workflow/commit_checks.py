"""Load-time checks of committing and merging, beside ``checks``:

- an agent template whose shell step runs ``git commit`` without ``workspace:
  worktree`` runs every item's commits in one shared checkout, where they race and take
  each other's files (prodigy always gives each agent a worktree): a warning naming the
  fix, at the step's line (``commit_required: true`` there has its own warning, from
  ``checks``, which names the same fix);
- the ``merge:`` block's placeholders: ``${merge.*}`` (known names only), the workflow's
  env and captures; no item and no ``${map.*}`` variables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Final

from mapwise.workflow.locate import Loc, Locator, Problem
from mapwise.workflow.model import Step, Workflow

# (phase, location, template text, locator) -> its problems: checks._judge_template
TemplateJudge = Callable[[Any, Loc, str, Locator], list[Problem]]

MERGE_VARIABLES: Final = ("source_branch", "target_branch", "worktree", "session_id")
# ``git commit``, also with git's global options first (``git -C dir commit``, ``-c k=v``)
_GIT_COMMIT: Final = re.compile(
    r"\bgit(?:\s+(?:-[Cc]\s+\S+|--?[\w-]+(?:=\S+)?))*\s+commit(?![\w-])"
)
_ITEM_SCOPED: Final = ("item_id", "item_index", "attempt")
SHARED_CHECKOUT: Final = (
    "{what} in the agent template without a worktree: items running at once share one "
    "checkout, so their commits race and take each other's files; add "
    "`workspace: worktree` to give each item its own git worktree"
)


def _walk(steps: tuple[Step, ...], base: Loc) -> Iterator[tuple[Loc, Step]]:
    for index, step in enumerate(steps):
        loc = (*base, index)
        yield loc, step
        yield from _walk(step.on_failure, (*loc, "on_failure"))


def commits_git(command: str) -> bool:
    """Whether a shell command runs ``git commit``."""
    return _GIT_COMMIT.search(command) is not None


def check_agent_commits(workflow: Workflow, locator: Locator) -> list[Problem]:
    """A warning for each agent-template step that commits, when there is no worktree."""
    if workflow.workspace.enabled:
        return []
    problems: list[Problem] = []
    for loc, step in _walk(workflow.map.agent_template, ("map", "agent_template")):
        if step.shell is not None and commits_git(step.shell):
            message = SHARED_CHECKOUT.format(what="`git commit`")
            problems.append(locator.problem((*loc, "shell"), message))
    return problems


def check_merge_placeholders(
    workflow: Workflow, locator: Locator, judge_template: TemplateJudge
) -> list[Problem]:
    """Every ``${...}`` of the ``merge:`` steps, judged for the merge phase: its own
    ``${merge.*}`` here, the rest by ``judge_template`` as in reduce (``checks``)."""
    from mapwise.interpolate import find_placeholders, is_item_path

    if workflow.merge is None:
        return []
    problems: list[Problem] = []
    for loc, step in _walk(workflow.merge.commands, ("merge", "commands")):
        for keys, text in step.template_fields():
            where = (*loc, *keys)
            for placeholder in find_placeholders(text):
                name = placeholder.name
                message: str | None = None
                if name.startswith("merge."):
                    if name.removeprefix("merge.") not in MERGE_VARIABLES:
                        known = ", ".join(f"merge.{k}" for k in MERGE_VARIABLES)
                        message = f"{placeholder.text}: unknown merge variable (known: {known})"
                elif is_item_path(name) or name in _ITEM_SCOPED:
                    message = f"{placeholder.text}: item variables exist only in the map phase"
                elif name.startswith("map."):
                    message = f"{placeholder.text}: map results exist only in the reduce phase"
                else:
                    problems.extend(judge_template("reduce", where, placeholder.text, locator))
                if message is not None:
                    problems.append(locator.problem(where, message))
    return problems
