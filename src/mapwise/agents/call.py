"""One run of an agent CLI, as mapwise asks for it and as the agent reports it."""

from __future__ import annotations

from dataclasses import dataclass

from mapwise.domain.usage import AgentUsage

DEFAULT_CONTINUE_PROMPT = (
    "You were interrupted before you finished. Continue the task where you left off, and finish it."
)


@dataclass(frozen=True)
class AgentCall:
    """What to run: the rendered prompt and options of an agent step."""

    prompt: str
    session: str | None  # the session to start (claude) or to resume (both); None: codex new
    resume: bool = False
    model: str | None = None
    max_turns: int | None = None
    allowed_tools: tuple[str, ...] = ()
    permission_mode: str | None = None
    append_system_prompt: str | None = None
    args: tuple[str, ...] = ()
    budget_usd: float | None = None  # what the item may still spend (--max-budget-usd)


@dataclass(frozen=True)
class AgentReading:
    """What a run's output says: its usage, and whether the agent says it succeeded.

    ``failed`` is None when no result was read: then the exit status decides, as for any
    command. ``detail`` is the subtype or the agent's error message; ``text`` is the
    result text that ``capture:`` takes.
    """

    usage: AgentUsage
    failed: bool | None
    detail: str = ""
    text: str | None = None


def positional_prompt(prompt: str) -> tuple[str, ...]:
    """The prompt as the CLI's positional argument: after ``--`` when it starts with ``-``,
    so that a prompt such as ``--help`` is never read as an option."""
    return ("--", prompt) if prompt.startswith("-") else (prompt,)
