"""Normalising a workflow written in prodigy's spellings into mapwise's one shape.

prodigy's MapReduce workflows are our starting point and should load unchanged. This
module rewrites plain data (from ``locate.parse_yaml``) before the model sees it:

- ``setup`` as a list or ``{commands, timeout, capture_outputs}``; ``reduce`` and
  ``map.agent_template`` as a list or ``{commands: [...]}``;
- ``map.agent_timeout_secs``, ``map.timeout_config.agent_timeout_secs`` and
  ``map.timeout_per_agent`` -> ``map.timeout``;
- ``map.retry_on_failure: N`` and ``retry_config`` (in ``map`` or ``error_policy``) ->
  ``map.retry``;
- ``on_item_failure``/``max_failures``/``failure_threshold``/``continue_on_failure`` at
  the top level, or an ``error_policy`` inside ``map`` -> ``error_policy``;
  ``continue_on_failure: false`` -> ``on_item_failure: stop`` (prodigy stops at the
  first failure then: ``should_stop_on_threshold`` in src/cook/workflow/error_policy.rs).

The keys prodigy reads are those of ``MapReduceWorkflowConfig`` and ``MapPhaseYaml``
(prodigy's src/config/mapreduce.rs); prodigy's serde ignores any other key. prodigy keys
mapwise does not implement are dropped with a warning naming the key and its line. The
same setting given twice (a shortcut and ``error_policy``, two retry spellings) is
fine when both say the same. Every move is recorded in the ``Locator`` so that a later
error points at the line the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from mapwise.workflow.locate import Loc, Locator, Problem, dotted, unknown_key
from mapwise.workflow.model import RetryPolicy
from mapwise.workflow.prodigy_merge import normalise_merge
from mapwise.workflow.prodigy_steps import Context, LoadWarning, normalise_steps

IGNORED_TOP_KEYS: Final = frozenset(
    {"commit_required", "profiles", "secrets", "env_files", "validate", "analysis"}
    | {"cook", "goal_seek", "foreach", "outputs", "commit_config", "handler"}
    | {"error_collection"}
)
POLICY_SHORTCUTS: Final = (
    "on_item_failure",
    "max_failures",
    "failure_threshold",
    "continue_on_failure",
)
IGNORED_POLICY_KEYS: Final = frozenset({"error_collection", "circuit_breaker"})
IGNORED_MAP_KEYS: Final = frozenset({"agent_timeout"})
# Keys prodigy's MapPhaseYaml has no field for (so prodigy ignores them), with the reason
MAP_KEY_NOTES: Final = {
    "on_item_failure": "prodigy reads on_item_failure only at the top level or in "
    "error_policy, and ignores it here; ignored",
}
IGNORED_TIMEOUT_CONFIG_KEYS: Final = frozenset(
    {"timeout_policy", "cleanup_grace_period_secs", "timeout_action", "enable_monitoring"}
    | {"command_timeouts"}
)
IGNORED_RETRY_KEYS: Final = frozenset(
    {"jitter", "jitter_factor", "retry_on", "retry_budget", "on_failure"}
)
MAP_TIMEOUT_KEYS: Final = ("timeout", "agent_timeout_secs", "timeout_config", "timeout_per_agent")
MAP_RETRY_KEYS: Final = ("retry", "retry_on_failure", "retry_config")
PRODIGY_RETRY_ATTEMPTS: Final = 3  # a retry_config's max_attempts when it gives none


@dataclass(frozen=True)
class Normalised:
    """The workflow's data in mapwise's shape, and the warnings about ignored keys."""

    data: dict[str, Any]
    warnings: tuple[LoadWarning, ...]
    profile_vars: frozenset[str] = frozenset()  # names set under prodigy's profiles


def normalise(doc: dict[str, Any], locator: Locator) -> Normalised:
    """Rewrite prodigy's spellings in ``doc``; raise ``Problem`` for what cannot load."""
    ctx = Context(locator)
    result: dict[str, Any] = {}
    for key, value in doc.items():
        if key in IGNORED_TOP_KEYS:
            ctx.warn((key,))
        elif key not in POLICY_SHORTCUTS and key not in ("error_policy", "env", "merge"):
            result[key] = value
    if "env" in doc:
        result["env"] = ctx.env_map(doc["env"], ("env",))
        if isinstance(result["env"], dict):
            ctx.env = {k: v for k, v in result["env"].items() if isinstance(v, str)}
    policy, policy_retry = _error_policy(ctx, doc)
    if policy is not None:
        result["error_policy"] = policy
    if isinstance(result.get("mode"), str):
        result["mode"] = result["mode"].lower()
    if "setup" in doc:
        result["setup"] = _setup(ctx, doc["setup"])
    if "workspace" in doc:
        result["workspace"] = _workspace(ctx, doc["workspace"])
    if (merge := normalise_merge(ctx, doc)) is not None:
        result["merge"] = merge
    if "reduce" in doc:
        result["reduce"] = normalise_steps(
            ctx, doc["reduce"], ("reduce",), ("reduce",), wrapped=True
        )
    if isinstance(doc.get("map"), dict):
        result["map"] = _map(ctx, doc["map"], policy_retry)
    elif policy_retry is not None:
        raise Problem("retry_config needs a map phase", policy_retry[1], dotted(policy_retry[1]))
    return Normalised(result, tuple(ctx.warnings), _profile_vars(doc.get("profiles")))


def _profile_vars(profiles: Any) -> frozenset[str]:
    """The variable names prodigy's ``profiles: {dev: {NAME: value, description: ...}}``
    sets (mapwise does not apply profiles; these explain a ``${NAME}`` set nowhere else)."""
    names: set[str] = set()
    if not isinstance(profiles, dict):
        return frozenset()
    for profile in profiles.values():
        if not isinstance(profile, dict):
            continue
        nested = profile.get("env")
        names.update(k for k in profile if isinstance(k, str) and k not in ("description", "env"))
        if isinstance(nested, dict):
            names.update(k for k in nested if isinstance(k, str))
    return frozenset(names)


def _error_policy(ctx: Context, doc: dict[str, Any]) -> tuple[Any, tuple[Any, Loc] | None]:
    """``error_policy`` from wherever prodigy allows it, and its ``retry_config`` if any."""
    value = doc.get("error_policy")
    src: Loc = ("error_policy",)
    inner = doc.get("map")
    if isinstance(inner, dict) and "error_policy" in inner:
        if "error_policy" in doc and doc["error_policy"] != inner["error_policy"]:
            where = ("map", "error_policy")
            message = "error_policy is given twice, differently (top level and map)"
            raise Problem(message, where, dotted(where))
        if "error_policy" not in doc:
            value, src = inner["error_policy"], ("map", "error_policy")
            ctx.locator.move(("error_policy",), src)
    if value is None and not any(key in doc for key in POLICY_SHORTCUTS):
        return None, None
    if value is not None and not isinstance(value, dict):
        return value, None  # the model reports "expected a mapping"
    policy: dict[str, Any] = {}
    retry: tuple[Any, Loc] | None = None
    for key, item in (value or {}).items():
        if key in IGNORED_POLICY_KEYS:
            ctx.warn((*src, key))
        elif key == "retry_config":
            retry = (item, (*src, key))
        else:
            policy[key] = item
    _policy_shortcuts(ctx, doc, policy)
    _continue_on_failure(ctx, policy)
    return policy, retry


def _policy_shortcuts(ctx: Context, doc: dict[str, Any], policy: dict[str, Any]) -> None:
    """prodigy's top-level ``on_item_failure``/``max_failures``/``failure_threshold``/
    ``continue_on_failure``; the same value in ``error_policy`` too is no conflict."""
    for key in POLICY_SHORTCUTS:
        if key not in doc:
            continue
        if key in policy:
            if policy[key] == doc[key]:
                continue
            message = (
                f"{key} is given twice, differently (top level: {doc[key]!r}, "
                f"error_policy: {policy[key]!r})"
            )
            raise Problem(message, (key,), key)
        policy[key] = doc[key]
        ctx.locator.move(("error_policy", key), (key,))


def _continue_on_failure(ctx: Context, policy: dict[str, Any]) -> None:
    """prodigy's ``continue_on_failure``: ``true`` (its default) goes on after a failed
    item, as mapwise does; ``false`` stops at the first failed item, which is mapwise's
    ``on_item_failure: stop`` (prodigy checks it before its ``on_item_failure``)."""
    if "continue_on_failure" not in policy:
        return
    value = policy.pop("continue_on_failure")
    src = ctx.locator.to_source(("error_policy", "continue_on_failure"))
    if not isinstance(value, bool):
        raise Problem(f"expected true or false, got {value!r}", src, dotted(src))
    if value is False:
        policy["on_item_failure"] = "stop"
        ctx.locator.move(("error_policy", "on_item_failure"), src)


def _setup(ctx: Context, value: Any) -> Any:
    """``setup`` as a list of steps or ``{commands, timeout, capture_outputs}``."""
    src = ("setup",)
    if value is None:
        return {}
    if isinstance(value, list):
        ctx.locator.move((*src, "commands"), src)
        return {"commands": normalise_steps(ctx, value, src, (*src, "commands"), wrapped=False)}
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        here = (*src, key)
        if key == "commands":
            result[key] = normalise_steps(ctx, item, here, here, wrapped=False)
        elif key == "timeout":
            result[key] = ctx.seconds(item, here)
        elif key != "capture_outputs":
            result[key] = item
    if "capture_outputs" in value:
        _capture_outputs(ctx, value["capture_outputs"], (*src, "capture_outputs"), result)
    return result


def _workspace(ctx: Context, value: Any) -> Any:
    """``workspace`` with its ``setup`` steps in mapwise's shape, like every other step.

    The short form (``workspace: worktree``) is the model's to read.
    """
    if not isinstance(value, dict) or "setup" not in value:
        return value
    src = ("workspace", "setup")
    return {**value, "setup": normalise_steps(ctx, value["setup"], src, src, wrapped=False)}


def _capture_outputs(ctx: Context, value: Any, src: Loc, setup: dict[str, Any]) -> None:
    """prodigy's ``capture_outputs: {name: index}`` -> ``capture: name`` on that step."""
    if not isinstance(value, dict):
        raise Problem("expected a mapping of variable names to step indexes", src, dotted(src))
    commands = setup.get("commands")
    steps = commands if isinstance(commands, list) else []
    for name, spec in value.items():
        here = (*src, name)
        index = spec.get("command_index") if isinstance(spec, dict) else spec
        if isinstance(spec, dict):
            _capture_spec_keys(ctx, spec, here)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(steps):
            raise Problem(f"{index!r} is not the index of a setup command", here, dotted(here))
        step = steps[index]
        if isinstance(step, dict) and step.get("capture") == name:
            continue  # the step's own capture says the same
        if not isinstance(step, dict) or "capture" in step:
            raise Problem(f"setup command {index} already captures its output", here, dotted(here))
        step["capture"] = name
        ctx.locator.move(("setup", "commands", index, "capture"), here)


def _capture_spec_keys(ctx: Context, spec: dict[str, Any], src: Loc) -> None:
    """The keys of prodigy's detailed ``capture_outputs`` entry (``CaptureConfig`` in its
    src/cook/execution/variable_capture.rs) beyond ``command_index``: the command's whole
    stdout is captured as text, so each one is a warning."""
    for key, item in spec.items():
        if key == "command_index" or (key, item) in (("format", "string"), ("source", "stdout")):
            continue
        if key == "format":
            ctx.warn((*src, key), "prodigy capture formats not supported; captured as text")
        else:
            ctx.warn((*src, key))


def _map(ctx: Context, value: dict[str, Any], policy_retry: tuple[Any, Loc] | None) -> Any:
    """``map`` with prodigy's timeout, retry and agent_template spellings rewritten."""
    src = ("map",)
    result: dict[str, Any] = {}
    for key, item in value.items():
        here = (*src, key)
        if key in IGNORED_MAP_KEYS:
            ctx.warn(here)
        elif key in MAP_KEY_NOTES:
            ctx.warn(here, MAP_KEY_NOTES[key])
        elif key == "agent_template":
            result[key] = normalise_steps(ctx, item, here, here, wrapped=True)
        elif key == "max_parallel" and isinstance(item, str) and item.strip().isdigit():
            result[key] = int(item)
        elif key not in MAP_TIMEOUT_KEYS and key not in MAP_RETRY_KEYS and key != "error_policy":
            result[key] = item
    _map_timeout(ctx, value, result)
    _map_retry(ctx, value, result, policy_retry)
    return result


def _map_timeout(ctx: Context, value: dict[str, Any], result: dict[str, Any]) -> None:
    """One ``map.timeout`` from ``timeout`` and prodigy's three spellings of it."""
    found: list[tuple[Any, Loc]] = []
    if "timeout" in value:
        found.append((value["timeout"], ("map", "timeout")))
    for key in ("agent_timeout_secs", "timeout_per_agent"):
        if key in value:
            found.append((ctx.seconds(value[key], ("map", key)), ("map", key)))
    if "timeout_config" in value:
        found.extend(_timeout_config(ctx, value["timeout_config"], ("map", "timeout_config")))
    if not found:
        return
    seconds, src = found[0]
    for other, where in found[1:]:
        if other != seconds:
            raise Problem(
                f"the map timeout is given twice, differently ({dotted(src)}: {seconds}, "
                f"{dotted(where)}: {other})",
                where,
                dotted(where),
            )
    result["timeout"] = seconds
    ctx.locator.move(("map", "timeout"), src)


def _timeout_config(ctx: Context, value: Any, src: Loc) -> list[tuple[Any, Loc]]:
    if not isinstance(value, dict):
        raise Problem("expected a mapping such as {agent_timeout_secs: 600}", src, dotted(src))
    found: list[tuple[Any, Loc]] = []
    for key, item in value.items():
        here = (*src, key)
        if key == "agent_timeout_secs":
            found.append((ctx.seconds(item, here), here))
        elif key in IGNORED_TIMEOUT_CONFIG_KEYS:
            ctx.warn(here)
        else:
            allowed = IGNORED_TIMEOUT_CONFIG_KEYS | {"agent_timeout_secs"}
            raise Problem(unknown_key(key, allowed), here, dotted(src))
    return found


def _map_retry(
    ctx: Context,
    value: dict[str, Any],
    result: dict[str, Any],
    policy_retry: tuple[Any, Loc] | None,
) -> None:
    """One ``map.retry`` from ``retry``, ``retry_on_failure`` or a ``retry_config``.

    Several spellings are fine when they come to the same policy; the first one given is
    the one later messages point at (so it is normalised last: its moves win).
    """
    given: list[tuple[Any, Loc]] = [
        (value[key], ("map", key)) for key in MAP_RETRY_KEYS if key in value
    ]
    if policy_retry is not None:
        given.append(policy_retry)
    if not given:
        return
    policies = [_one_retry(ctx, item, src) for item, src in reversed(given)][::-1]
    for other, (_, where) in zip(policies[1:], given[1:], strict=True):
        if not _same_retry(policies[0], other):
            names = " and ".join(dotted(src) for _, src in given)
            raise Problem(f"retry is given twice, differently ({names})", where, dotted(where))
    ctx.locator.move(("map", "retry"), given[0][1])
    result["retry"] = policies[0]


def _one_retry(ctx: Context, item: Any, src: Loc) -> Any:
    """One retry spelling in mapwise's shape."""
    if src[-1] == "retry":
        return item
    if src[-1] == "retry_on_failure":
        return _retry_on_failure(item, src)
    return _retry_config(ctx, item, src)


def _same_retry(one: Any, other: Any) -> bool:
    """Whether two retry settings are the same policy (defaults filled in)."""
    if one == other:
        return True
    try:
        return RetryPolicy.model_validate(one) == RetryPolicy.model_validate(other)
    except ValidationError:
        return False


def _retry_on_failure(value: Any, src: Loc) -> dict[str, Any]:
    """prodigy counts retries; mapwise counts attempts, the first one included."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Problem(f"expected a number of retries (0 or more), got {value!r}", src, dotted(src))
    return {"max_attempts": value + 1}


def _retry_config(ctx: Context, value: Any, src: Loc) -> Any:
    """prodigy's ``retry_config`` -> mapwise's ``retry`` (attempts, backoff and delays).

    Without ``max_attempts`` it is prodigy's default of 3 (``default_max_attempts`` in
    its src/cook/workflow/error_policy.rs), not mapwise's 1.
    """
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {"max_attempts": PRODIGY_RETRY_ATTEMPTS}
    for key, item in value.items():
        here = (*src, key)
        if key in ("max_attempts", "attempts"):
            result["max_attempts"] = item
            ctx.locator.move(("map", "retry", "max_attempts"), here)
        elif key == "backoff":
            _backoff(ctx, item, here, result)
        elif key in ("initial_delay", "max_delay"):
            result[key] = ctx.seconds(item, here)
        elif key in IGNORED_RETRY_KEYS:
            ctx.warn(here)
        else:
            result[key] = item
    return result


def _backoff(ctx: Context, value: Any, src: Loc, result: dict[str, Any]) -> None:
    """``backoff: exponential``, ``{type: exponential, ...}`` or ``{exponential: {...}}``."""
    params: Any = None
    if isinstance(value, dict) and "type" in value:
        name, params = value["type"], {k: v for k, v in value.items() if k != "type"}
    elif isinstance(value, dict) and len(value) == 1:
        name, params = next(iter(value.items()))
    elif isinstance(value, dict):
        raise Problem("expected a backoff such as exponential or {type: ...}", src, dotted(src))
    else:
        name = value
    if name == "fibonacci":
        ctx.warn(src, "fibonacci backoff not supported by mapwise; using exponential")
        name = "exponential"
    result["backoff"] = name
    ctx.locator.move(("map", "retry", "backoff"), src)
    for key, item in (params or {}).items() if isinstance(params, dict) else ():
        here = (*src, key)
        if key in ("initial", "delay", "max_delay"):
            target = "max_delay" if key == "max_delay" else "initial_delay"
            result[target] = ctx.seconds(item, here)
            ctx.locator.move(("map", "retry", target), here)
        elif not (key in ("multiplier", "base") and item == 2):
            ctx.warn(here)
