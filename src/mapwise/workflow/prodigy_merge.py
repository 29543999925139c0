"""prodigy's ``merge:`` block, normalised to ``{commands: [...], timeout}``.

prodigy's ``MergeWorkflow`` (src/config/mapreduce.rs) is a list of steps or
``{commands: [...], timeout: SECONDS}``; prodigy runs it in its session worktree when it
merges that worktree back. mapwise runs it only in worktree mode (``workspace:
worktree``), after reduce, in the job worktree: it is the workflow author's own explicit
merge, since mapwise itself never merges into the user's branches. Without a worktree
there is no job branch to merge, so the block is dropped with a warning.
"""

from __future__ import annotations

from typing import Any, Final

from mapwise.workflow.prodigy_steps import Context, normalise_steps

NOT_WORKTREE: Final = (
    "prodigy's merge block runs only with workspace: worktree (there is no job branch "
    "to merge otherwise); ignored"
)


def is_worktree(workspace: Any) -> bool:
    """Whether a raw ``workspace`` value asks for worktree mode."""
    if isinstance(workspace, dict):
        workspace = workspace.get("kind")
    return isinstance(workspace, str) and workspace == "worktree"


def normalise_merge(ctx: Context, doc: dict[str, Any]) -> Any:
    """The ``merge`` block in mapwise's shape; None when it is absent, empty or ignored."""
    value = doc.get("merge")
    src = ("merge",)
    if value is None:
        return None
    if not is_worktree(doc.get("workspace")):
        ctx.warn(src, NOT_WORKTREE)
        return None
    if isinstance(value, list):
        ctx.locator.move((*src, "commands"), src)
        return {"commands": normalise_steps(ctx, value, src, (*src, "commands"), wrapped=False)}
    if not isinstance(value, dict):
        return value  # the model reports what is wrong
    result: dict[str, Any] = {}
    for key, item in value.items():
        here = (*src, key)
        if key == "commands":
            result[key] = normalise_steps(ctx, item, here, here, wrapped=False)
        elif key == "timeout":
            result[key] = ctx.seconds(item, here)
        else:
            result[key] = item  # the model reports an unknown key
    return result
