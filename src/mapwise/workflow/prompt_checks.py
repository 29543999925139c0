"""Placeholders in agent prompts that nothing will fill in.

A ``shell:`` step leaves a ``${NAME}`` that is neither a workflow variable nor a capture
to the shell (it may be ``${HOME}``). No shell ever reads a ``claude:`` or ``codex:``
prompt, though: the agent would get ``${NAME}`` as written, silently. So, in an agent
step's texts (its prompt, options and args):

- a name of the item's family that mapwise does not define (``${item_json}``,
  ``${item_total}``) is an error: it can never resolve;
- any other plain name that is neither an ``env`` variable nor a capture the step can see
  is a warning: it may be meant literally (a prompt about shell scripts), but rarely is.

Dotted names, ``${item...}`` and ``${map.*}`` are judged for every step kind by
``checks.py``; this module only adds what is particular to prompts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from mapwise.workflow.locate import Loc, Locator, Problem
from mapwise.workflow.model import Step, Workflow

# the fields of an agent step that reach the agent as text, never through a shell
PROMPT_FIELDS: Final = frozenset(
    {"claude", "codex", "model", "append_system_prompt", "continue_prompt", "args"}
)
_BUILTIN: Final = frozenset({"item", "item_id", "item_index", "attempt", "job_id"})
_ITEM_HINTS: Final = {"item_json": "${item} is the item as JSON"}


def check_prompts(workflow: Workflow, locator: Locator) -> tuple[list[Problem], list[Problem]]:
    """Errors and warnings for the unresolvable placeholders of every agent step."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    setup_captures = _captures(workflow.setup.commands)
    for base, steps in _phases(workflow):
        known = set(workflow.env) | setup_captures | _captures(steps)
        for loc, step in _walk(steps, base):
            if step.agent is None:
                continue
            for field_loc, text in _prompt_texts(step, loc):
                found_errors, found_warnings = _judge_prompt(text, known, field_loc, locator)
                errors += found_errors
                warnings += found_warnings
    return errors, warnings


def _phases(workflow: Workflow) -> list[tuple[Loc, tuple[Step, ...]]]:
    return [
        (("setup", "commands"), workflow.setup.commands),
        (("map", "agent_template"), workflow.map.agent_template),
        (("workspace", "setup"), workflow.workspace.setup),
        (("reduce",), workflow.reduce),
    ]


def _walk(steps: tuple[Step, ...], base: Loc) -> Iterator[tuple[Loc, Step]]:
    """Each step and, depth first, its ``on_failure`` steps, with their locations."""
    for index, step in enumerate(steps):
        loc = (*base, index)
        yield loc, step
        yield from _walk(step.on_failure, (*loc, "on_failure"))


def _captures(steps: tuple[Step, ...]) -> set[str]:
    """The names a list of steps captures into (an ``on_failure`` step captures nothing)."""
    return {step.capture for step in steps if step.capture is not None}


def _prompt_texts(step: Step, loc: Loc) -> Iterator[tuple[Loc, str]]:
    for keys, text in step.template_fields():
        if keys[0] in PROMPT_FIELDS:
            yield (*loc, *keys), text


def _judge_prompt(
    text: str, known: set[str], loc: Loc, locator: Locator
) -> tuple[list[Problem], list[Problem]]:
    from mapwise.interpolate import find_placeholders

    errors: list[Problem] = []
    warnings: list[Problem] = []
    for placeholder in find_placeholders(text):
        name = placeholder.name
        if name in _BUILTIN or name in known or "." in name or "[" in name:
            continue
        if name.startswith("item_"):
            hint = _ITEM_HINTS.get(name, "the item is ${item}, its fields ${item.field}")
            message = f"{placeholder.text}: no such item variable ({hint})"
            errors.append(locator.problem(loc, message))
        else:
            message = (
                f"{placeholder.text} is neither an env variable nor a capture: the agent "
                "gets it as written (no shell reads a prompt)"
            )
            warnings.append(locator.problem(loc, message))
    return errors, warnings
