"""The workflow model: what a workflow file says, validated, in one canonical shape.

The loader (``mapwise.workflow.loader``) normalises prodigy's spellings (setup as
``{commands, timeout}``, ``agent_timeout_secs``, ``timeout_config``) into this shape
before validation, so the rest of mapwise sees one form; ``workspace: worktree`` is
read as its long form by the model itself. The model describes a job and never runs one.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mapwise.limits import MAX_PARALLEL_LIMIT

NAME_PATTERN = r"^[A-Za-z0-9._-]+$"
STEP_KINDS = ("shell", "claude", "codex", "write_file")


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=False, populate_by_name=True, protected_namespaces=()
    )


class WriteFile(_Model):
    """``write_file: {path, content}``: write interpolated content to a file."""

    path: str = Field(min_length=1)
    content: str = ""


AGENT_KINDS = ("claude", "codex")
# the options of an agent step, and the agents whose CLIs have each one
AGENT_OPTIONS: dict[str, tuple[str, ...]] = {
    "model": ("claude", "codex"),
    "max_turns": ("claude",),
    "allowed_tools": ("claude",),
    "permission_mode": ("claude",),
    "append_system_prompt": ("claude",),
    "args": ("claude", "codex"),
    "continue_prompt": ("claude", "codex"),
}


class Step(_Model):
    """One command of setup, the agent template, reduce or an ``on_failure`` list.

    Exactly one of ``shell``, ``claude``, ``codex`` and ``write_file`` is set. The agent
    options (``model`` ... ``continue_prompt``) belong to ``claude:`` and ``codex:`` steps
    and become flags of the agent CLI (``mapwise.agents``), never shell text.
    """

    shell: str | None = None
    claude: str | None = None
    codex: str | None = None
    write_file: WriteFile | None = None
    # prodigy's step label: shown instead of the command in progress, logs and records
    name: str | None = Field(default=None, min_length=1)
    model: str | None = Field(default=None, min_length=1)
    max_turns: int | None = Field(default=None, ge=1)
    allowed_tools: tuple[str, ...] = ()
    permission_mode: str | None = Field(default=None, min_length=1)
    append_system_prompt: str | None = None
    args: tuple[str, ...] = ()
    continue_prompt: str | None = Field(default=None, min_length=1)
    timeout: float | None = Field(default=None, gt=0)
    # a name, dotted as prodigy's ``shell.output`` may be
    capture: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
    )
    # prodigy's capture formats: string (the output's text), json (fields reachable as
    # ``${name.field}``), lines (a JSON array of the lines), number, boolean
    capture_format: Literal["string", "json", "lines", "number", "boolean"] = "string"
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    on_failure: tuple[Step, ...] = ()
    # prodigy's key: with a worktree workspace, the step fails (error kind ``no_commit``)
    # when it made no commit; without one it is a load-time error (checks.py).
    commit_required: bool = False

    @field_validator("allowed_tools", mode="before")
    @classmethod
    def _tools_list(cls, value: Any) -> Any:
        """``allowed_tools: "Read,Edit"`` is the list ``[Read, Edit]``, as the CLI reads it."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Step:
        kinds = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(
                f"a step needs exactly one of shell, claude, codex, write_file (found: {found})"
            )
        for option, agents in AGENT_OPTIONS.items():
            if option in self.model_fields_set and kinds[0] not in agents:
                owners = " and ".join(f"{a}:" for a in agents)
                raise ValueError(f"{option} is an option of {owners} steps, not of {kinds[0]}:")
        return self

    @property
    def kind(self) -> Literal["shell", "claude", "codex", "write_file"]:
        if self.shell is not None:
            return "shell"
        if self.claude is not None:
            return "claude"
        if self.codex is not None:
            return "codex"
        return "write_file"

    @property
    def agent(self) -> Literal["claude", "codex"] | None:
        """The agent CLI this step runs, or None for a shell or write_file step."""
        kind = self.kind
        return kind if kind == "claude" or kind == "codex" else None

    @property
    def prompt(self) -> str | None:
        """An agent step's prompt template."""
        return self.claude if self.claude is not None else self.codex

    def template_fields(self) -> tuple[tuple[tuple[str, ...], str], ...]:
        """This step's interpolated texts, each with the keys that lead to it in the step.

        The one list of which fields hold ``${...}`` placeholders: load-time checks walk it
        with locations (``("env", "NAME")``), the freeze and the reduce phase through
        :meth:`templates`. ``on_failure`` steps are steps of their own, not fields.
        """
        fields: list[tuple[tuple[str, ...], str]] = []
        if self.shell is not None:
            fields.append((("shell",), self.shell))
        if self.claude is not None:
            fields.append((("claude",), self.claude))
        if self.codex is not None:
            fields.append((("codex",), self.codex))
        for option in ("model", "append_system_prompt", "continue_prompt"):
            text = getattr(self, option)
            if text is not None:
                fields.append(((option,), text))
        fields += [(("args", str(n)), arg) for n, arg in enumerate(self.args)]
        if self.write_file is not None:
            fields.append((("write_file", "path"), self.write_file.path))
            fields.append((("write_file", "content"), self.write_file.content))
        if self.working_dir is not None:
            fields.append((("working_dir",), self.working_dir))
        fields += [(("env", name), value) for name, value in self.env.items()]
        return tuple(fields)

    def templates(self) -> tuple[str, ...]:
        """Every interpolated text of this step and, depth first, of its ``on_failure`` steps.

        Whatever a placeholder in any of them needs (an item field, ``${map.results}``)
        the step may need when it runs, handlers included.
        """
        own = tuple(text for _, text in self.template_fields())
        return own + tuple(text for handler in self.on_failure for text in handler.templates())

    def describe(self) -> str:
        """A short one-line label for progress output and records: the step's ``name``
        when it has one (as prodigy shows it), else its kind and command."""
        if self.name is not None:
            return self.name
        if self.shell is not None:
            return f"shell: {self.shell}"
        if self.claude is not None:
            return f"claude: {self.claude}"
        if self.codex is not None:
            return f"codex: {self.codex}"
        assert self.write_file is not None
        return f"write_file: {self.write_file.path}"


class Backoff(StrEnum):
    """How the delay between attempts of one item grows."""

    FIXED = "fixed"  # initial_delay every time
    LINEAR = "linear"  # initial_delay * attempt
    EXPONENTIAL = "exponential"  # initial_delay * 2 ** (attempt - 1)


class RetryPolicy(_Model):
    """``map.retry``: how many attempts an item gets and how long to wait between them."""

    max_attempts: int = Field(default=1, ge=1)
    backoff: Backoff = Backoff.EXPONENTIAL
    initial_delay: float = Field(default=1.0, ge=0)
    max_delay: float = Field(default=60.0, ge=0)
    # ``retry.continue``: a failed attempt's retry continues it like an interrupted one
    # (its succeeded steps kept, the failed agent step's session resumed) instead of
    # starting over; for instance after an agent ran out of turns
    continue_: bool = Field(default=False, alias="continue")


class SetupPhase(_Model):
    """The setup phase: its steps and an optional timeout for the whole phase."""

    commands: tuple[Step, ...] = ()
    timeout: float | None = Field(default=None, gt=0)


class MergePhase(SetupPhase):
    """prodigy's ``merge:`` block: steps run in the job worktree once a worktree job
    has completed, with an optional timeout for the whole phase."""


class MapPhase(_Model):
    """``map:``: where items come from, how they are chosen, and what runs per item."""

    input: str = Field(min_length=1)
    json_path: str | None = None
    filter: str | None = None
    sort_by: str | None = None
    distinct: str | None = None
    offset: int = Field(default=0, ge=0)
    max_items: int | None = Field(default=None, ge=0)
    id: str | None = None
    max_parallel: int | str = 1
    timeout: float | None = Field(default=None, gt=0)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    max_cost_usd: float | None = Field(default=None, gt=0)  # one item's agent spend, at most
    agent_template: tuple[Step, ...] = Field(min_length=1)

    @field_validator("max_parallel")
    @classmethod
    def _parallel_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("max_parallel must be at least 1")
        if isinstance(value, int) and value > MAX_PARALLEL_LIMIT:
            raise ValueError(f"max_parallel must be at most {MAX_PARALLEL_LIMIT:,}")
        if isinstance(value, str) and not value.strip().startswith("$"):
            raise ValueError('max_parallel must be a number or "${VAR}" naming an env variable')
        return value


class OnItemFailure(StrEnum):
    """What a failed item (attempts spent) does to the job."""

    DLQ = "dlq"  # park it in the dead letter queue and go on
    STOP = "stop"  # stop the map phase; the job fails and stays resumable


class ErrorPolicy(_Model):
    """``error_policy``: when failures stop the map phase."""

    on_item_failure: OnItemFailure = OnItemFailure.DLQ
    max_failures: int | None = Field(default=None, ge=0)
    failure_threshold: float | None = Field(default=None, ge=0, le=1)
    max_cost_usd: float | None = Field(default=None, gt=0)  # the job's agent spend, at most


class ExecutorSpec(_Model):
    """``executor:``: where the map phase's attempts run (the local pool, or Dask)."""

    kind: Literal["local", "dask"] = "local"
    scheduler: str | None = None  # the Dask scheduler's address, e.g. tcp://host:8786


class WorkspaceKind(StrEnum):
    """Where a job's commands run."""

    NONE = "none"  # every command in the workflow file's folder (or its working_dir)
    WORKTREE = "worktree"  # a git worktree for the job and one for each item


class OnConflict(StrEnum):
    """What an item whose commits conflict with the job branch does."""

    RERUN = "rerun"  # run the item again from the job branch's new head (a new attempt)
    DLQ = "dlq"  # park it in the DLQ, its branch and worktree kept


class WorkspaceSpec(_Model):
    """``workspace:``: ``none`` (the default) or ``worktree``, in short or long form.

    ``workspace: worktree`` is short for ``workspace: {kind: worktree}``. ``repo`` is a
    path relative to the workflow file's folder; without it the repository is the one
    that holds the workflow file's folder (where commands run without a workspace).
    ``base`` is the ref the job branch starts from (default ``HEAD``). ``setup`` runs
    once in each new item worktree, before the item's template, with the item's
    variables. Whether ``repo`` is a repository and ``base`` a ref is checked when a job
    starts, not here: the model describes a job and never looks at the disk.
    """

    kind: WorkspaceKind = WorkspaceKind.NONE
    repo: str | None = Field(default=None, min_length=1)
    base: str | None = Field(default=None, min_length=1)
    setup: tuple[Step, ...] = ()
    on_conflict: OnConflict = OnConflict.RERUN

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        """``worktree``/``none`` -> ``{kind: ...}``; nothing (``workspace:``) -> defaults."""
        if value is None:
            return {}
        if isinstance(value, str):
            return {"kind": value}
        if isinstance(value, dict | WorkspaceSpec):
            return value
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        raise ValueError(
            f"expected worktree, none or a mapping such as {{kind: worktree}}, got {shown}"
        )

    @property
    def enabled(self) -> bool:
        """True when the job and its items run in git worktrees."""
        return self.kind is WorkspaceKind.WORKTREE


class Workflow(_Model):
    """A whole workflow file, validated and normalised."""

    name: str = Field(pattern=NAME_PATTERN)
    mode: Literal["mapreduce"] = "mapreduce"
    env: dict[str, str] = Field(default_factory=dict)
    setup: SetupPhase = Field(default_factory=SetupPhase)
    map: MapPhase
    reduce: tuple[Step, ...] = ()
    error_policy: ErrorPolicy = Field(default_factory=ErrorPolicy)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    workspace: WorkspaceSpec = Field(default_factory=WorkspaceSpec)
    merge: MergePhase | None = None  # worktree mode only (see workflow.prodigy_merge)

    def resolved_max_parallel(self, environ: Mapping[str, str] | None = None) -> int:
        """``map.max_parallel`` as a number, resolving ``${VAR}`` from the workflow env
        (its values expanded, see ``mapwise.envexpand``), else from the process
        environment (``environ``, by default ``os.environ``), as prodigy does."""
        import os

        from mapwise.envexpand import expand_env, lookup

        value = self.map.max_parallel
        if isinstance(value, int):
            return value
        environ = os.environ if environ is None else environ
        name = value.strip().removeprefix("$").strip("{}")
        raw = lookup(name, expand_env(self.env, environ).env, environ)
        if raw is None:
            raise ValueError(
                f"max_parallel refers to {value!r}, which neither env nor the environment defines"
            )
        number = int(raw)
        if number < 1:
            raise ValueError(f"max_parallel {value!r} is {number}; it must be at least 1")
        if number > MAX_PARALLEL_LIMIT:
            raise ValueError(
                f"max_parallel {value!r} is {number}; it must be at most {MAX_PARALLEL_LIMIT:,}"
            )
        return number


def model_json_schema() -> dict[str, Any]:
    """The JSON schema of a (normalised) workflow, for docs and editors."""
    return Workflow.model_json_schema()
