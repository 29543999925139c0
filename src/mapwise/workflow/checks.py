"""Checks a valid model cannot make alone: things that need the rest of the workflow.

``max_parallel: "${VAR}"`` must name an env variable holding a whole number; ``filter``,
``sort_by``, ``distinct`` and ``json_path`` must compile; every ``${...}`` must make
sense in its phase (no item in setup or reduce, no ``${map.*}`` outside reduce, no
unknown ``${map.x}``, only item variables in ``map.id``; ``workspace.setup`` runs per
item, so it may use the item); a ``capture`` must not take a reserved name;
``commit_required`` needs ``workspace: worktree``. Catching these at load time is what
makes a job fail in the first second instead of after hours of map phase.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any, Final, Literal

from mapwise.envexpand import expand_env, lookup
from mapwise.limits import MAX_PARALLEL_LIMIT
from mapwise.workflow import commit_checks
from mapwise.workflow.locate import Loc, Locator, Problem, unknown_key
from mapwise.workflow.model import Step, Workflow
from mapwise.workflow.prodigy_steps import env_reference

Phase = Literal["setup", "input", "map", "workspace", "reduce", "id"]

RESERVED_NAMES: Final = frozenset({"item", "item_id", "item_index", "attempt", "job_id", "map"})
_ITEM_SCOPED: Final = ("item_id", "item_index", "attempt")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PHASE_NAMES: Final = {"setup": "setup", "input": "map.input", "reduce": "reduce"}


def check_workflow(
    workflow: Workflow, locator: Locator, profile_vars: frozenset[str] = frozenset()
) -> tuple[list[Problem], list[Problem]]:
    """Every problem (errors) and every doubtful but legal choice (warnings) found.

    ``profile_vars``: the names set under prodigy's ``profiles`` (which mapwise does not
    apply), so that a ``${X}`` set only there is explained.
    """
    errors: list[Problem] = []
    errors.extend(_check_max_parallel(workflow, locator, profile_vars))
    errors.extend(_check_item_pipeline(workflow, locator))
    errors.extend(_check_placeholders(workflow, locator))
    capture_errors, warnings = _check_captures(workflow, locator)
    errors.extend(capture_errors)
    warnings.extend(_check_commit_required(workflow, locator))
    warnings.extend(_check_workspace_unused(workflow, locator))
    warnings.extend(check_env_references(workflow, locator, profile_vars))
    warnings.extend(commit_checks.check_agent_commits(workflow, locator))
    # the merge block's steps are judged as reduce's are, with this module's judge
    errors.extend(commit_checks.check_merge_placeholders(workflow, locator, _judge_template))
    return errors, warnings


def _check_max_parallel(
    workflow: Workflow, locator: Locator, profile_vars: frozenset[str] = frozenset()
) -> list[Problem]:
    """``max_parallel: "${VAR}"``: VAR in env (expanded) or in the process environment,
    a whole number, at least 1."""
    value = workflow.map.max_parallel
    if not isinstance(value, str):
        return []
    loc: Loc = ("map", "max_parallel")
    name = env_reference(value)
    if name is None:
        return [locator.problem(loc, f'must be a number or "${{VAR}}", got {value!r}')]
    raw = lookup(name, expand_env(workflow.env, os.environ).env, os.environ)
    if raw is None:
        why = f"{value} names no variable of the workflow's env nor of the environment"
        return [locator.problem(loc, why + _profiles_note(name, profile_vars))]
    try:
        number = int(raw.strip())
    except ValueError:
        return [locator.problem(loc, f"{value} is {raw!r}, not a whole number")]
    if number < 1:
        return [locator.problem(loc, f"{value} is {number}; it must be at least 1")]
    if number > MAX_PARALLEL_LIMIT:
        why = f"{value} is {number}; it must be at most {MAX_PARALLEL_LIMIT:,}"
        return [locator.problem(loc, why)]
    return []


def _check_item_pipeline(workflow: Workflow, locator: Locator) -> list[Problem]:
    """``json_path``, ``filter``, ``sort_by`` and ``distinct`` must compile."""
    from mapwise.fields import parse_path
    from mapwise.items.filter import compile_filter
    from mapwise.items.sort import compile_sort

    problems: list[Problem] = []
    phase = workflow.map
    checks: list[tuple[str, str | None, Any]] = [
        ("json_path", phase.json_path, _compile_json_path),
        ("filter", phase.filter, compile_filter),
        ("sort_by", phase.sort_by, compile_sort),
        ("distinct", phase.distinct, parse_path),
    ]
    for key, text, compile_ in checks:
        if text is None:
            continue
        try:
            compile_(text)
        except ValueError as exc:
            problems.append(locator.problem(("map", key), _first_line(exc)))
    return problems


class _JSONPathSyntax(ValueError):
    """A JSONPath that python-jsonpath cannot compile."""


def _compile_json_path(text: str) -> None:
    import jsonpath

    try:
        jsonpath.compile(text)
    except jsonpath.JSONPathError as exc:
        raise _JSONPathSyntax(f"invalid JSONPath {text!r}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _check_placeholders(workflow: Workflow, locator: Locator) -> list[Problem]:
    """Every ``${...}`` in every template, judged by the phase it runs in."""
    problems: list[Problem] = []
    templates: list[tuple[Phase, Loc, str]] = [("input", ("map", "input"), workflow.map.input)]
    if workflow.map.id is not None:
        templates.append(("id", ("map", "id"), workflow.map.id))
    for phase, base, steps in _phases(workflow):
        for loc, step in _walk_steps(steps, base):
            templates.extend((phase, field_loc, text) for field_loc, text in _step_texts(step, loc))
    captured = _captured_names(workflow)
    for phase, loc, text in templates:
        problems.extend(_judge_template(phase, loc, text, locator, captured))
    return problems


# what every step's output is, as prodigy names it (the last step's stdout and stderr)
STEP_OUTPUT_VARIABLES = ("shell.output", "shell.stderr")


def _captured_names(workflow: Workflow) -> frozenset[str]:
    """Every ``capture:`` name of the workflow: ``${name.field}`` reads a JSON capture."""
    return frozenset(
        step.capture
        for _, base, steps in _phases(workflow)
        for _, step in _walk_steps(steps, base)
        if step.capture is not None
    )


def _phases(workflow: Workflow) -> list[tuple[Phase, Loc, tuple[Step, ...]]]:
    return [
        ("setup", ("setup", "commands"), workflow.setup.commands),
        ("map", ("map", "agent_template"), workflow.map.agent_template),
        ("workspace", ("workspace", "setup"), workflow.workspace.setup),
        ("reduce", ("reduce",), workflow.reduce),
    ]


def _walk_steps(steps: tuple[Step, ...], base: Loc) -> Iterator[tuple[Loc, Step]]:
    """Each step and, depth first, its ``on_failure`` steps, with their locations."""
    for index, step in enumerate(steps):
        loc = (*base, index)
        yield loc, step
        yield from _walk_steps(step.on_failure, (*loc, "on_failure"))


def _step_texts(step: Step, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """The step's fields that are interpolated, with their locations."""
    for keys, text in step.template_fields():
        yield (*loc, *keys), text


def _judge_template(
    phase: Phase, loc: Loc, text: str, locator: Locator, captured: frozenset[str] = frozenset()
) -> list[Problem]:
    from mapwise.interpolate import find_placeholders

    problems = []
    for placeholder in find_placeholders(text):
        if _is_capture_or_output(placeholder.name, captured):
            continue
        message = _judge(phase, placeholder.name, placeholder.text)
        if message is not None:
            problems.append(locator.problem(loc, message))
    return problems


def _is_capture_or_output(name: str, captured: frozenset[str]) -> bool:
    """``${shell.output}``, a dotted capture name, or a field of a capture
    (``${meta.items[0].x}``: the capture's JSON, read at run time)."""
    if name in STEP_OUTPUT_VARIABLES or name in captured:
        return True
    return any(name.startswith((f"{c}.", f"{c}[")) for c in captured)


def _judge(phase: Phase, name: str, text: str) -> str | None:
    """Why ``name`` (written ``text``) cannot be used in ``phase``, or None if it can."""
    from mapwise.interpolate import MAP_VARIABLES, is_item_path

    item_variable = is_item_path(name) or name in _ITEM_SCOPED
    if phase == "id":
        if is_item_path(name) or name == "item_index":
            return None
        return f"{text}: the item id template may only use the item (${{item}}, ${{item.field}})"
    if item_variable:
        if phase in ("map", "workspace"):  # workspace.setup runs in each new item worktree
            return None
        where = _PHASE_NAMES[phase]
        return f"{text}: item variables exist only in the map phase, not in {where}"
    if name.startswith("map."):
        return _judge_map_variable(phase, name, text, MAP_VARIABLES)
    if name.startswith("env.") and _ENV_NAME.fullmatch(name.removeprefix("env.")):
        return None  # the workflow env, then the process environment
    if "." in name or "[" in name:
        return f"{text}: unknown variable (prodigy's {text} is not supported; use capture)"
    return None


def _judge_map_variable(phase: Phase, name: str, text: str, known: tuple[str, ...]) -> str | None:
    key = name.removeprefix("map.")
    if key not in known:
        hint = unknown_key(key, known).removeprefix("unknown key ")
        listed = ", ".join(f"map.{k}" for k in known)
        return f"{text}: unknown map variable {hint} (known: {listed})"
    if phase != "reduce":
        return f"{text}: map results exist only in the reduce phase"
    return None


def _check_commit_required(workflow: Workflow, locator: Locator) -> list[Problem]:
    """``commit_required: true`` asks an agent-template step for a commit, which only an
    item worktree can hold: anywhere else it is ignored with a warning, as prodigy's
    workflows use it (and they run unchanged)."""
    worktree = workflow.workspace.enabled
    problems = []
    for phase, base, steps in _phases(workflow):
        honoured = worktree and phase in ("map", "workspace")
        for loc, step in _walk_steps(steps, base):
            if step.commit_required and not honoured:
                why = "it needs workspace: worktree" if not worktree else "outside the map phase"
                problems.append(locator.problem((*loc, "commit_required"), f"ignored: {why}"))
    return problems


def _check_workspace_unused(workflow: Workflow, locator: Locator) -> list[Problem]:
    """``repo``, ``base``, ``setup``, ``on_conflict`` of a workspace that is not a worktree
    do nothing: a warning, so that ``kind: none`` can switch worktrees off for a while."""
    spec = workflow.workspace
    if spec.enabled:
        return []
    given = [key for key in type(spec).model_fields if key in spec.model_fields_set]
    return [
        locator.problem(("workspace", key), "ignored: the workspace kind is none")
        for key in given
        if key != "kind"
    ]


def _check_captures(workflow: Workflow, locator: Locator) -> tuple[list[Problem], list[Problem]]:
    """A capture must not take a reserved name; one that hides an env variable is a warning."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    for _phase, base, steps in _phases(workflow):
        for loc, step in _walk_steps(steps, base):
            name = step.capture
            if name is None:
                continue
            where = (*loc, "capture")
            if name in RESERVED_NAMES:
                errors.append(locator.problem(where, f"{name!r} is a reserved variable name"))
            elif name in workflow.env:
                warnings.append(
                    locator.problem(
                        where, f"capture {name!r} hides the env variable of the same name"
                    )
                )
    return errors, warnings


def _profiles_note(name: str, profile_vars: frozenset[str]) -> str:
    if name not in profile_vars:
        return ""
    return (
        f" ({name} is set only under profiles, which mapwise does not apply: "
        "set it in env or in the environment)"
    )


def check_env_references(
    workflow: Workflow, locator: Locator, profile_vars: frozenset[str] = frozenset()
) -> list[Problem]:
    """Warnings for variables that will be empty or literal although a value was meant.

    - an ``env:`` value naming a variable set neither earlier in ``env`` nor in the
      process environment (it expands to the empty string, as in a shell);
    - ``${env.NAME}`` in a template with ``NAME`` set nowhere (it is empty too);
    - ``${NAME}``/``$NAME`` in a template that only prodigy's ``profiles`` sets.

    Judged against the environment of the process that loads the workflow: a run on
    another machine may see it differently (each run expands env again).
    """
    from mapwise.interpolate import find_placeholders

    expanded = expand_env(workflow.env, os.environ)
    warnings = [
        locator.problem(
            ("env", key),
            f"${{{name}}} is set neither earlier in env nor in the environment; it is empty"
            + _profiles_note(name, profile_vars),
        )
        for key, name in expanded.unset
    ]
    captured = _captured_names(workflow)
    for _phase, base, steps in _phases(workflow):
        for loc, step in _walk_steps(steps, base):
            for field_loc, text in _step_texts(step, loc):
                for placeholder in find_placeholders(text):
                    name = placeholder.name
                    env_name = name.removeprefix("env.")
                    if not _ENV_NAME.fullmatch(env_name) or name in captured:
                        continue
                    if lookup(env_name, expanded.env, os.environ) is not None:
                        continue
                    if name.startswith("env."):
                        message = f"{placeholder.text}: {env_name} is set nowhere; it is empty"
                        message += _profiles_note(env_name, profile_vars)
                    elif name in profile_vars:
                        message = (
                            f"{placeholder.text}: {name} is set only under profiles, which "
                            "mapwise does not apply: set it in env or in the environment"
                        )
                    else:
                        continue
                    warnings.append(locator.problem(field_loc, message))
    return warnings
