"""What agent steps cost: one agent step execution's usage, and sums of them.

An agent CLI reports its session, its cost in USD (Claude Code) and its tokens at the end
of each run (``mapwise.agents`` reads them). mapwise records one ``AgentUsage`` per agent
step execution and adds them up per attempt, item and job, across runs: money spent on
an interrupted agent stays on record, because the next attempt continues its session.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class AgentUsage:
    """One run of an agent CLI: which session, what it said of itself, what it cost."""

    agent: str  # "claude" or "codex"
    session_id: str | None  # Claude's session UUID, Codex's thread id
    continued: bool = False  # run with --resume / exec resume: the session went on
    result_read: bool = False  # False: no result object was found (the exit status decided)
    is_error: bool = False
    subtype: str | None = None  # "success", "error_max_turns", ... (codex: "turn.failed")
    cost_usd: float | None = None  # total_cost_usd; None when the agent reports no cost
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    turns: int = 0
    model: str | None = None
    api_ms: float | None = None  # duration_api_ms: time spent waiting for the model's API


@dataclass(frozen=True)
class Cost:
    """Agent usage added up (an attempt's, an item's, a job's)."""

    usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    turns: int = 0
    runs: int = 0  # agent step executions
    sessions: int = 0  # distinct sessions
    resumed: int = 0  # runs that continued a session after a stop (or with retry.continue)

    @property
    def any(self) -> bool:
        """Whether any agent step ran: jobs of shell steps show no cost at all."""
        return self.runs > 0

    def to_json(self) -> dict[str, float | int]:
        """The ``cost`` object of ``status --json`` (SPEC section 9)."""
        return {
            "usd": round(self.usd, 6),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_creation_tokens": self.cache_creation_tokens,
            "turns": self.turns,
            "agent_runs": self.runs,
            "sessions": self.sessions,
            "resumed_runs": self.resumed,
        }

    def describe(self) -> str:
        """One line for a person: ``$1.23, 120k tokens in / 8k out, 40 turns``."""
        tokens_in = self.input_tokens + self.cache_read_tokens + self.cache_creation_tokens
        return (
            f"${self.usd:.2f}, {_count(tokens_in)} tokens in / {_count(self.output_tokens)} out"
            f" ({_count(self.cache_read_tokens)} from cache), {self.turns} turns,"
            f" {self.runs} agent run{'s' if self.runs != 1 else ''}"
            f" in {self.sessions} session{'s' if self.sessions != 1 else ''}"
            + (f" ({self.resumed} resumed)" if self.resumed else "")
        )


def compact(n: int) -> str:
    """``1234`` -> ``1234``, ``123456`` -> ``123k``, ``12345678`` -> ``12M``."""
    return _count(n)


def _count(n: int) -> str:
    if n >= 10_000_000:
        return f"{n / 1_000_000:.0f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    return str(n)


def total(usages: Iterable[AgentUsage]) -> Cost:
    """The sum of agent runs (an attempt's, when called with its steps' usages)."""
    usd = 0.0
    tokens = [0, 0, 0, 0]
    turns = runs = resumed = 0
    sessions: set[str] = set()
    for u in usages:
        usd += u.cost_usd or 0.0
        tokens[0] += u.input_tokens
        tokens[1] += u.output_tokens
        tokens[2] += u.cache_read_tokens
        tokens[3] += u.cache_creation_tokens
        turns += u.turns
        runs += 1
        resumed += int(u.continued)
        if u.session_id:
            sessions.add(u.session_id)
    return Cost(
        usd=usd,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cache_read_tokens=tokens[2],
        cache_creation_tokens=tokens[3],
        turns=turns,
        runs=runs,
        sessions=len(sessions),
        resumed=resumed,
    )
