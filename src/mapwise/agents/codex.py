"""Codex non-interactively: ``codex exec --json PROMPT``, one JSON event per line.

From the Codex CLI's ``exec`` documentation (docs/agents.md cites it): the first event is
``thread.started`` with the ``thread_id`` (the session), each turn ends with
``turn.completed`` and its ``usage`` (``input_tokens``, ``cached_input_tokens``,
``output_tokens``) or with ``turn.failed``; ``codex exec resume THREAD_ID PROMPT``
continues a thread. Codex reports tokens and no cost.
"""

from __future__ import annotations

from mapwise.agents import jsonout
from mapwise.agents.call import AgentCall, AgentReading, positional_prompt
from mapwise.domain.usage import AgentUsage

FAILED = "turn.failed"


def argv(cli: tuple[str, ...], call: AgentCall) -> tuple[str, ...]:
    """``codex exec --json [options] PROMPT`` or ``... resume THREAD_ID PROMPT``."""
    args: list[str] = [*cli, "exec", "--json"]
    if call.model:
        args += ["--model", call.model]
    args += call.args
    if call.resume and call.session is not None:
        args += ["resume", call.session]
    return (*args, *positional_prompt(call.prompt))


def thread_started(line: str) -> str | None:
    """The thread id when ``line`` is the ``thread.started`` event, else None."""
    for obj in jsonout.objects(line):
        if obj.get("type") == "thread.started":
            return jsonout.text(obj.get("thread_id"))
    return None


def read(output: str, call: AgentCall) -> AgentReading:
    """Sum the turns of the run's events; a ``turn.failed`` fails it.

    An ``error`` event fails the run only when no turn completes after it: Codex also
    reports a stream it retried as ``error`` ("Reconnecting... 1/5") and goes on.
    """
    thread = call.session
    tokens = [0, 0, 0]
    turns = 0
    ended = False
    failure: str | None = None
    said: str | None = None  # the last ``error`` event's words, until a turn completes
    text: str | None = None
    for obj in jsonout.objects(output):
        kind = obj.get("type")
        if kind == "thread.started":
            thread = jsonout.text(obj.get("thread_id")) or thread
        elif kind == "turn.completed":
            ended, turns, said = True, turns + 1, None
            usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
            assert isinstance(usage, dict)
            tokens[0] += jsonout.count(usage.get("input_tokens"))
            tokens[1] += jsonout.count(usage.get("cached_input_tokens"))
            tokens[2] += jsonout.count(usage.get("output_tokens"))
        elif kind == "error":
            said = _message(obj) or kind
        elif kind == FAILED:
            ended, turns = True, turns + 1
            failure = _message(obj) or said or kind
        elif kind == "item.completed":
            item = obj.get("item")
            if isinstance(item, dict) and item.get("type") == "agent_message":
                text = jsonout.text(item.get("text")) or text
    if said is not None and failure is None and not ended:
        ended, failure = True, said  # an error that no turn got over
    usage = AgentUsage(
        agent="codex",
        session_id=thread,
        continued=call.resume,
        result_read=ended,
        is_error=failure is not None,
        subtype=None if not ended else (FAILED if failure else "success"),
        input_tokens=max(tokens[0] - tokens[1], 0),
        cache_read_tokens=tokens[1],
        output_tokens=tokens[2],
        turns=turns,
        model=call.model,
    )
    if not ended:
        return AgentReading(usage, failed=None)
    return AgentReading(usage, failed=failure is not None, detail=failure or "", text=text)


def _message(obj: dict[str, object]) -> str | None:
    error = obj.get("error")
    if isinstance(error, dict):
        return jsonout.text(error.get("message"))
    return jsonout.text(obj.get("message"))


def no_session(stderr: str) -> bool:
    """Whether ``exec resume`` failed because the thread does not exist here."""
    lowered = stderr.lower()
    return any(
        words in lowered
        for words in ("no rollout found", "not found", "no saved session", "no session")
    )
