"""Claude Code in print mode: ``claude -p PROMPT --output-format json --session-id UUID``.

From the Claude Code CLI reference and its headless-mode page (docs/agents.md cites
them): ``--session-id`` starts a session with a given UUID, ``--resume`` continues one
(in the directory it was made in), and the result object (``"type": "result"``) carries
``subtype``, ``is_error``, ``session_id``, ``total_cost_usd``, ``usage``, ``num_turns``,
``duration_api_ms`` and ``result`` (an error subtype carries ``errors`` instead). The
exit status is not to be trusted for success: a result with ``is_error: true`` has been
seen with exit 0 and with exit 1, and ``error_max_turns`` exits 1; the object decides.
"""

from __future__ import annotations

from typing import Any

from mapwise.agents import jsonout
from mapwise.agents.call import AgentCall, AgentReading, positional_prompt
from mapwise.domain.usage import AgentUsage

SUCCESS = "success"


def argv(cli: tuple[str, ...], call: AgentCall) -> tuple[str, ...]:
    """The command line of one run, new (``--session-id``) or continued (``--resume``)."""
    prompt = positional_prompt(call.prompt)
    head = (*cli, "-p", *(prompt if len(prompt) == 1 else ()), "--output-format", "json")
    args: list[str] = list(head)
    if call.session is not None:
        args += ["--resume" if call.resume else "--session-id", call.session]
    if call.model:
        args += ["--model", call.model]
    if call.max_turns is not None:
        args += ["--max-turns", str(call.max_turns)]
    if call.permission_mode:
        args += ["--permission-mode", call.permission_mode]
    if call.append_system_prompt:
        args += ["--append-system-prompt", call.append_system_prompt]
    if call.budget_usd is not None:
        args += ["--max-budget-usd", f"{call.budget_usd:.6f}"]
    if call.allowed_tools:
        args += ["--allowedTools", *call.allowed_tools]
    args += call.args
    if len(prompt) > 1:
        args += prompt
    return tuple(args)


def _is_result(obj: dict[str, Any]) -> bool:
    return obj.get("type") == "result"


def read(output: str, call: AgentCall) -> AgentReading:
    """The run's result object, looked for from the end of its output."""
    found = jsonout.last_object(output, _is_result)
    if found is None:
        usage = AgentUsage("claude", call.session, continued=call.resume, model=call.model)
        return AgentReading(usage, failed=None)
    subtype = jsonout.text(found.get("subtype"))
    is_error = found.get("is_error") is True
    tokens = found.get("usage") if isinstance(found.get("usage"), dict) else {}
    assert isinstance(tokens, dict)
    usage = AgentUsage(
        agent="claude",
        session_id=jsonout.text(found.get("session_id")) or call.session,
        continued=call.resume,
        result_read=True,
        is_error=is_error,
        subtype=subtype,
        cost_usd=jsonout.money(found.get("total_cost_usd")),
        input_tokens=jsonout.count(tokens.get("input_tokens")),
        output_tokens=jsonout.count(tokens.get("output_tokens")),
        cache_read_tokens=jsonout.count(tokens.get("cache_read_input_tokens")),
        cache_creation_tokens=jsonout.count(tokens.get("cache_creation_input_tokens")),
        turns=jsonout.count(found.get("num_turns")),
        model=_model(found) or call.model,
        api_ms=jsonout.number(found.get("duration_api_ms")),
    )
    text = jsonout.text(found.get("result"))
    failed = is_error or (subtype or SUCCESS) != SUCCESS
    detail = ""
    if failed:
        detail = subtype if subtype and subtype != SUCCESS else "is_error"
        said = _errors(found) or text
        detail += f": {said.strip().splitlines()[0][:200]}" if said and said.strip() else ""
    return AgentReading(usage, failed=failed, detail=detail, text=text)


def _errors(found: dict[str, Any]) -> str | None:
    """The first of an error result's ``errors`` (its words for what went wrong)."""
    errors = found.get("errors")
    if not isinstance(errors, list) or not errors:
        return None
    first = errors[0]
    if isinstance(first, dict):
        return jsonout.text(first.get("message"))
    return jsonout.text(first)


def _model(found: dict[str, Any]) -> str | None:
    """The model that did most of the work: ``modelUsage``'s costliest entry."""
    models = found.get("modelUsage")
    if not isinstance(models, dict) or not models:
        return None

    def spent(name: str) -> float:
        entry = models[name]
        return (jsonout.number(entry.get("costUSD")) or 0.0) if isinstance(entry, dict) else 0.0

    return str(max(models, key=spent))


def no_session(stderr: str) -> bool:
    """Whether a ``--resume`` failed because the session does not exist (never started,
    or made in another directory): then the step starts the session anew."""
    return "no conversation found" in stderr.lower()
