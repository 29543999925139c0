"""Normalising prodigy's spellings of steps (and the shared helpers of normalisation).

A prodigy step may say ``capture_output: name`` (ours: ``capture``), give ``on_failure``
in any of prodigy's forms (``OnFailureConfig`` in prodigy's
src/cook/workflow/on_failure.rs: ``true``, a command, a list of commands, one step, or
``{commands: [...], max_attempts, fail_workflow}``), and carry keys that only make sense
in prodigy (``id``, ``validate``, ``auto_commit``, ...). Those keys are dropped with a
warning that names them, their line and, where it differs, what mapwise does instead;
``name`` and ``commit_required`` are keys of mapwise's steps too. Step kinds mapwise does
not run (``goal_seek``, ``foreach``, ``test``) and conditional steps (``when``) are
errors: silently skipping or always running such a step would change what the workflow
does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from mapwise.workflow.locate import Loc, Locator, Problem, describe, dotted, unknown_key

IGNORED: Final = "prodigy key not supported by mapwise; ignored"

# prodigy's MapReduce phases run only shell, claude and write_file steps (its
# coordination/command_executor.rs refuses the rest); the legacy `command:` and the
# modular `handler:` are kinds of its plain workflows
UNSUPPORTED_KINDS: Final = ("goal_seek", "foreach", "test", "cook", "command", "handler")
IGNORED_STEP_KEYS: Final = frozenset(
    {
        "id",
        "analysis",
        "outputs",
        "on_success",
        "validate",
        "output_file",
        "context",
        "capture_streams",
        "commit_config",
        "auto_commit",
        "step_validate",
        "skip_validation",
        "validation_timeout",
        "ignore_validation_failure",
    }
)
# Step keys prodigy's MapReduce phases read nowhere (its coordination/executor.rs runs
# a step's shell/claude/write_file and on_failure only), with what mapwise does.
STEP_KEY_NOTES: Final = {
    "retry": "prodigy's MapReduce phases never retry a single step; ignored "
    "(map.retry runs the whole item again)",
    "retry_config": "not a key of prodigy's steps (prodigy ignores it here); ignored "
    "(retry_config belongs in map or error_policy)",
    "on_exit_code": "prodigy's MapReduce phases never run it; ignored",
}
# Keys of prodigy's on_failure handler configuration (not of a step).
HANDLER_CONFIG_KEYS: Final = frozenset(
    {"max_attempts", "max_retries", "fail_workflow", "retry_original", "strategy"}
    | {"handler_failure_fatal"}
)
HANDLER_RETRY_KEYS: Final = frozenset({"max_attempts", "max_retries", "retry_original"})
GOES_ON: Final = (
    "the step still fails after these steps run (mapwise's on_failure cleans up); prodigy "
    "would go on after a handler that succeeds"
)
GOES_ON_MAPPING: Final = f"{GOES_ON}; fail_workflow: true says what mapwise does"
GOES_ON_TEXT: Final = f"{GOES_ON}; a list of steps (- shell: ...) says what mapwise does"
NO_STEP_RETRY: Final = (
    "running the failed step again after its handler is not supported; ignored "
    "(map.retry runs the whole item again)"
)
IGNORE_ERRORS: Final = (
    "a step whose failure is ignored is not supported; its failure fails it "
    "(end a shell command with '|| true' to ignore it)"
)
WRITE_FILE_IGNORED: Final = frozenset({"format", "mode", "create_dirs"})

_ENV_REF: Final = re.compile(r"^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))$")
_DURATION: Final = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?$")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def env_reference(text: str) -> str | None:
    """The variable name of ``$NAME`` or ``${NAME}``, or None if ``text`` is not one."""
    match = _ENV_REF.match(text.strip())
    return None if match is None else match.group(1) or match.group(2)


@dataclass(frozen=True)
class LoadWarning:
    """A warning about a key that loading ignored: its line, its key and why."""

    line: int
    key: str
    message: str


@dataclass
class Context:
    """What normalisation shares: the locator, the warnings so far, the workflow env."""

    locator: Locator
    warnings: list[LoadWarning] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def warn(self, src: Loc, message: str = IGNORED) -> None:
        """Warn about the key at file path ``src``."""
        self.warnings.append(LoadWarning(self.locator.source.line_of(src), dotted(src), message))

    def seconds(self, value: Any, src: Loc) -> Any:
        """A prodigy duration as seconds: ``600``, ``"600"``, ``"600s"``, ``"10m"``, ``$VAR``.

        Numbers pass through (their range is checked by the model); anything else that
        is not a duration is an error here, naming the forms accepted.
        """
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _not_seconds(value, src)
        if not isinstance(value, str):
            return value
        name = env_reference(value)
        if name is not None:
            return self._seconds_from_env(name, value, src)
        match = _DURATION.match(value.strip())
        if match is None:
            raise _not_seconds(value, src)
        number = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return int(number) if number.is_integer() else number

    def _seconds_from_env(self, name: str, text: str, src: Loc) -> float | int:
        raw = self.env.get(name)
        if raw is None:
            raise Problem(f"{text} names no variable of the workflow's env", src, dotted(src))
        match = _DURATION.match(raw.strip())
        if match is None:
            raise Problem(f"{text} is {raw!r}, not a number of seconds", src, dotted(src))
        number = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return int(number) if number.is_integer() else number

    def env_map(self, value: Any, src: Loc) -> Any:
        """An ``env`` mapping with its scalar values as text (YAML reads ``PORT: 80`` as 80).

        prodigy's ``{value: X, secret: true}`` gives X, with a warning that mapwise does
        not mask secrets. Other values are left for the model to reject.
        """
        if not isinstance(value, dict):
            return {} if value is None else value
        return {name: self._env_value(item, (*src, name)) for name, item in value.items()}

    def _env_value(self, value: Any, src: Loc) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if value is None:
            return ""
        if isinstance(value, dict) and "value" in value:
            for key in value:
                if key != "value":
                    self.warn((*src, key), "prodigy secret masking not supported; value used")
            return self._env_value(value["value"], (*src, "value"))
        return value


def _not_seconds(value: Any, src: Loc) -> Problem:
    return Problem(
        f"expected a number of seconds (or '90s', '10m', '$VAR'), got {describe(value)}",
        src,
        dotted(src),
    )


def normalise_steps(ctx: Context, value: Any, src: Loc, dst: Loc, *, wrapped: bool) -> Any:
    """A list of steps, given as a list or (``wrapped``) as ``{commands: [...]}``."""
    if value is None:
        return []
    if wrapped and isinstance(value, dict):
        value, src = _unwrap_commands(ctx, value, src, dst)
    if not isinstance(value, list):
        return value  # the model reports "expected a list"
    return [
        normalise_step(ctx, step, (*src, index), (*dst, index)) for index, step in enumerate(value)
    ]


def _unwrap_commands(ctx: Context, value: dict[str, Any], src: Loc, dst: Loc) -> tuple[Any, Loc]:
    """prodigy's deprecated ``{commands: [...]}`` form of a list of steps."""
    for key in value:
        if key != "commands":
            raise Problem(unknown_key(key, ["commands"]), (*src, key), dotted(src))
    if "commands" not in value:
        raise Problem("expected a list of steps or {commands: [...]}", src, dotted(src))
    ctx.locator.move(dst, (*src, "commands"))
    return value["commands"], (*src, "commands")


def normalise_step(ctx: Context, value: Any, src: Loc, dst: Loc) -> Any:
    """One step in mapwise's shape: prodigy keys renamed, dropped or refused."""
    if not isinstance(value, dict):
        raise Problem(
            f"expected a step such as {{shell: ...}}, got {describe(value)}", src, dotted(src)
        )
    _refuse_unsupported(value, src)
    result: dict[str, Any] = {}
    for key, item in value.items():
        here, there = (*src, key), (*dst, key)
        if key in IGNORED_STEP_KEYS:
            ctx.warn(here)
        elif key in STEP_KEY_NOTES:
            ctx.warn(here, STEP_KEY_NOTES[key])
        elif key == "capture_output":
            _capture_output(ctx, value, item, here, dst, result)
        elif key == "capture_format":
            result[key] = item
        elif key == "on_failure":
            result[key] = normalise_on_failure(ctx, item, here, there)
        elif key == "env":
            result[key] = ctx.env_map(item, here)
        elif key == "write_file":
            result[key] = _write_file(ctx, item, here)
        else:
            result[key] = item
    return result


def _refuse_unsupported(value: dict[str, Any], src: Loc) -> None:
    for kind in UNSUPPORTED_KINDS:
        if kind in value:
            raise Problem(
                f"step kind {kind!r} is not supported by mapwise"
                " (use shell, claude, codex or write_file)",
                (*src, kind),
                dotted(src),
            )
    if "when" in value:
        raise Problem(
            "conditional steps ('when') are not supported by mapwise; "
            "put the condition in the shell command",
            (*src, "when"),
            dotted(src),
        )


def _capture_output(
    ctx: Context, step: dict[str, Any], item: Any, here: Loc, dst: Loc, result: dict[str, Any]
) -> None:
    """``capture_output: name`` -> ``capture: name``; ``true`` captures into ``output``.

    Both keys naming the same variable say one thing twice, which is no mistake.
    """
    name = _capture_name(item, step)
    if "capture" in step:
        if name is None or name == step["capture"]:
            return
        raise Problem("give capture or capture_output, not both", here, dotted(here))
    if name is None:
        return
    result["capture"] = name
    ctx.locator.move((*dst, "capture"), here)


def _capture_name(value: Any, step: dict[str, Any] | None = None) -> Any:
    """The variable ``capture_output`` names: ``true`` is ``shell.output`` for a shell
    step and ``claude.output`` for a claude step, as prodigy names them
    (``CaptureOutput::Default``); false or null none."""
    if value is True:
        kind = "claude" if step is not None and "claude" in step else "shell"
        return f"{kind}.output"
    return None if value is False or value is None else value


def normalise_on_failure(ctx: Context, value: Any, src: Loc, dst: Loc) -> Any:
    """``on_failure`` as a list of steps, from each of prodigy's forms.

    A list of steps is mapwise's own form. prodigy's forms mean "go on after a handler
    that succeeds" unless they say ``fail_workflow: true``; mapwise's handlers clean up
    and the step still fails, so those forms load with a warning saying so.
    """
    if value is None or value is False:  # prodigy: no handler, the failure fails
        return []
    if value is True:
        ctx.warn(src, IGNORE_ERRORS)
        return []
    if isinstance(value, str):
        ctx.warn(src, GOES_ON_TEXT)
        ctx.locator.move((*dst, 0), src)
        return [normalise_step(ctx, command_step(value), src, (*dst, 0))]
    if isinstance(value, list):
        if any(isinstance(item, str) for item in value):
            ctx.warn(src, GOES_ON_TEXT)
        steps = [command_step(item) if isinstance(item, str) else item for item in value]
        return _handler_steps(ctx, steps, src, dst)
    if not isinstance(value, dict):
        return value
    _handler_flags(ctx, value, src)
    if "commands" in value:
        return _handler_config(ctx, value, src, dst)
    step = {key: item for key, item in value.items() if key not in HANDLER_CONFIG_KEYS}
    ctx.locator.move((*dst, 0), src)
    return [normalise_step(ctx, step, src, (*dst, 0))]


def command_step(text: str) -> dict[str, Any]:
    """A command given as text: a ``claude:`` step when it starts with ``/`` (a slash
    command), else a ``shell:`` step, as prodigy's ``handler_commands`` reads it."""
    return {"claude": text} if text.startswith("/") else {"shell": text}


def _handler_flags(ctx: Context, value: dict[str, Any], src: Loc) -> None:
    """Warn about the handler keys whose meaning mapwise does not share."""
    if value.get("fail_workflow") is not True:
        where = (*src, "fail_workflow") if "fail_workflow" in value else src
        ctx.warn(where, GOES_ON_MAPPING)
    for key in value:
        if key in HANDLER_RETRY_KEYS:
            ctx.warn((*src, key), NO_STEP_RETRY)
        elif key in HANDLER_CONFIG_KEYS and key != "fail_workflow":
            ctx.warn((*src, key))


def _handler_config(ctx: Context, value: dict[str, Any], src: Loc, dst: Loc) -> Any:
    """prodigy's ``{commands: [...], strategy, timeout, fail_workflow, ...}`` handler."""
    for key in value:
        if key in ("timeout", "capture"):
            ctx.warn((*src, key))
        elif key != "commands" and key not in HANDLER_CONFIG_KEYS:
            allowed = HANDLER_CONFIG_KEYS | {"commands", "timeout", "capture"}
            raise Problem(unknown_key(key, allowed), (*src, key), dotted(src))
    ctx.locator.move(dst, (*src, "commands"))
    return _handler_steps(ctx, value["commands"], (*src, "commands"), dst)


def _handler_steps(ctx: Context, value: Any, src: Loc, dst: Loc) -> Any:
    """A handler's steps; prodigy's ``continue_on_error`` on one is dropped with a warning
    (mapwise's on_failure steps stop at the first that fails)."""
    if not isinstance(value, list):
        return normalise_steps(ctx, value, src, dst, wrapped=False)
    steps = []
    for index, step in enumerate(value):
        if isinstance(step, dict) and "continue_on_error" in step:
            here = (*src, index, "continue_on_error")
            ctx.warn(here, "ignored: on_failure steps stop at the first that fails")
            step = {key: item for key, item in step.items() if key != "continue_on_error"}
        steps.append(step)
    return normalise_steps(ctx, steps, src, dst, wrapped=False)


def _write_file(ctx: Context, value: Any, src: Loc) -> Any:
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        if key in WRITE_FILE_IGNORED:
            ctx.warn((*src, key))
        else:
            result[key] = item
    return result
