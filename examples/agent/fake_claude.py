#!/usr/bin/env python3
"""An offline stand-in for the Claude Code CLI (`claude`) in print mode.

It parses its command line like the real CLI (commander.js rules and wordings), keeps a
session store laid out like the real one, prints the documented output shapes (text, json,
json --verbose, stream-json), and does on request what an agent does to a checkout: edit
a file, commit. Nothing goes to the network. Standard library only, Python 3.11+.

    fake_claude.py -p "PROMPT" --output-format json --session-id UUID [options]
    fake_claude.py -p "PROMPT" --output-format json --resume UUID [--fork-session]

Behaviour is configured by FAKE_CLAUDE_* environment variables, overridden per run by
directives in the prompt: `[fake:key=value]` or `[fake:key]`. docs/fake-agents.md lists
every knob and the documentation each behaviour comes from.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

VERSION = "2.1.0"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
DIRECTIVE_RE = re.compile(r"\[fake:([A-Za-z_][A-Za-z0-9_]*)(?:=([^\]]*))?\]")
DEFAULT_MODEL = "claude-sonnet-4-5"
MODEL_ALIASES = {
    "sonnet": "claude-sonnet-4-5",
    "opus": "claude-opus-4-1",
    "haiku": "claude-haiku-4-5",
}
DEFAULT_TOOLS = [
    "Task",
    "Bash",
    "Glob",
    "Grep",
    "ExitPlanMode",
    "Read",
    "Edit",
    "Write",
    "NotebookEdit",
    "WebFetch",
    "TodoWrite",
    "WebSearch",
    "BashOutput",
    "KillShell",
    "SlashCommand",
]
RESULTS = (
    "success",
    "error_max_turns",
    "error_during_execution",
    "error_max_budget_usd",
    "api_error",
)
API_ERROR_TEXT = (
    'API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},'
    '"request_id":"req_fake000000000000000000"}'
)

# -- the command line, commander.js style ----------------------------------------------
# (dest, flags as commander shows them, kind, choices); kind: bool | value | optional | variadic
OPTIONS: list[tuple[str, str, str, tuple[str, ...] | None]] = [
    ("print", "-p, --print", "bool", None),
    ("verbose", "--verbose", "bool", None),
    ("output_format", "--output-format <format>", "value", ("text", "json", "stream-json")),
    ("input_format", "--input-format <format>", "value", ("text", "stream-json")),
    ("json_schema", "--json-schema <schema>", "value", None),
    ("include_partial_messages", "--include-partial-messages", "bool", None),
    ("replay_user_messages", "--replay-user-messages", "bool", None),
    ("model", "--model <model>", "value", None),
    ("fallback_model", "--fallback-model <model>", "value", None),
    ("max_turns", "--max-turns <turns>", "value", None),
    ("max_budget_usd", "--max-budget-usd <amount>", "value", None),
    (
        "permission_mode",
        "--permission-mode <mode>",
        "value",
        ("acceptEdits", "bypassPermissions", "default", "dontAsk", "plan"),
    ),
    ("permission_prompt_tool", "--permission-prompt-tool <tool>", "value", None),
    ("dangerously_skip_permissions", "--dangerously-skip-permissions", "bool", None),
    ("allow_dangerously_skip_permissions", "--allow-dangerously-skip-permissions", "bool", None),
    ("allowed_tools", "--allowedTools, --allowed-tools <tools...>", "variadic", None),
    ("disallowed_tools", "--disallowedTools, --disallowed-tools <tools...>", "variadic", None),
    ("tools", "--tools <tools...>", "variadic", None),
    ("add_dir", "--add-dir <directories...>", "variadic", None),
    ("mcp_config", "--mcp-config <configs...>", "variadic", None),
    ("strict_mcp_config", "--strict-mcp-config", "bool", None),
    ("system_prompt", "--system-prompt <prompt>", "value", None),
    ("append_system_prompt", "--append-system-prompt <prompt>", "value", None),
    ("session_id", "--session-id <uuid>", "value", None),
    ("resume", "-r, --resume [value]", "optional", None),
    ("continue", "-c, --continue", "bool", None),
    ("fork_session", "--fork-session", "bool", None),
    ("no_session_persistence", "--no-session-persistence", "bool", None),
    ("settings", "--settings <file-or-json>", "value", None),
    ("setting_sources", "--setting-sources <sources>", "value", None),
    ("agent", "--agent <agent>", "value", None),
    ("agents", "--agents <json>", "value", None),
    ("effort", "--effort <level>", "value", None),
    ("betas", "--betas <betas...>", "variadic", None),
    ("plugin_dir", "--plugin-dir <paths...>", "variadic", None),
    ("disable_slash_commands", "--disable-slash-commands", "bool", None),
    ("ide", "--ide", "bool", None),
    ("debug", "-d, --debug [filter]", "optional", None),
    ("debug_file", "--debug-file <path>", "value", None),
    ("mcp_debug", "--mcp-debug", "bool", None),
    ("help", "-h, --help", "bool", None),
    ("version", "-v, --version", "bool", None),
]
NAMES: dict[str, tuple[str, str, str, tuple[str, ...] | None]] = {}
for _spec in OPTIONS:
    for _flag in _spec[1].split(" ")[0:3]:
        _flag = _flag.rstrip(",")
        if _flag.startswith("-"):
            NAMES[_flag] = _spec


class Exit(Exception):
    """Stop with ``message`` on stderr and exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def parse_args(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Options and positional arguments, the way commander.js reads them."""
    opts: dict[str, Any] = {}
    positional: list[str] = []
    queue = list(argv)
    while queue:
        arg = queue.pop(0)
        if arg == "--":
            positional.extend(queue)
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        inline: str | None = None
        if arg.startswith("--"):
            name, eq, rest = arg.partition("=")
            inline = rest if eq else None
        else:
            name = arg[:2]
            spec = NAMES.get(name)
            if len(arg) > 2 and spec is not None:
                if spec[2] == "bool":  # -pv is -p -v
                    queue.insert(0, "-" + arg[2:])
                else:
                    inline = arg[2:]
        spec = NAMES.get(name)
        if spec is None:
            raise Exit(f"error: unknown option '{arg}'")
        dest, flags, kind, choices = spec
        if kind == "bool":
            opts[dest] = True
            continue
        if kind == "optional":
            if inline is not None:
                opts[dest] = inline
            elif queue and not queue[0].startswith("-"):
                opts[dest] = queue.pop(0)
            else:
                opts[dest] = True
            continue
        if kind == "value":
            if inline is not None:
                value = inline
            elif queue:
                value = queue.pop(0)  # a required option-argument may begin with a dash
            else:
                raise Exit(f"error: option '{flags}' argument missing")
            if choices and value not in choices:
                raise Exit(
                    f"error: option '{flags}' argument '{value}' is invalid. "
                    f"Allowed choices are {', '.join(choices)}."
                )
            opts[dest] = value
            continue
        # variadic: every following argument up to the next option
        values = [inline] if inline is not None else []
        while queue and not queue[0].startswith("-"):
            values.append(queue.pop(0))
        if not values:
            raise Exit(f"error: option '{flags}' argument missing")
        opts.setdefault(dest, []).extend(values)
    if len(positional) > 1:
        raise Exit(f"error: too many arguments. Expected 1 argument but got {len(positional)}.")
    return opts, positional


HELP = f"""Usage: claude [options] [command] [prompt]

Claude Code - starts an interactive session by default, use -p/--print for
non-interactive output

(This is fake_claude.py {VERSION}, an offline stand-in: print mode only. See
docs/fake-agents.md.)

Options:
{chr(10).join("  " + spec[1] for spec in OPTIONS)}
"""


# -- knobs -----------------------------------------------------------------------------


class Knobs:
    """FAKE_CLAUDE_<KEY> from the environment, overridden by `[fake:key=value]` directives."""

    def __init__(self, prefix: str, prompt: str) -> None:
        self.values: dict[str, str] = {}
        self.edits: list[str] = []
        for key, value in os.environ.items():
            if key.startswith(prefix):
                self.values[key[len(prefix) :].lower()] = value
        if self.values.get("edit"):
            self.edits.append(self.values["edit"])
        directive_edits: list[str] = []
        for match in DIRECTIVE_RE.finditer(prompt):
            key, value = match.group(1).lower(), match.group(2)
            self.values[key] = "1" if value is None else value
            if key == "edit" and value:
                directive_edits.append(value)
        if directive_edits:
            self.edits = directive_edits

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.values.get(key)
        return default if value is None else value

    def given(self, key: str) -> bool:
        return key in self.values

    def number(self, key: str, default: float) -> float:
        value = self.values.get(key)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except ValueError:
            raise Exit(f"fake_claude: knob {key}={value!r} is not a number", 2) from None

    def integer(self, key: str, default: int) -> int:
        return int(self.number(key, default))

    def flag(self, key: str) -> bool:
        return self.values.get(key, "0").strip().lower() not in ("", "0", "false", "no", "off")


# -- small helpers ---------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def out(text: str) -> None:
    """Write to stdout and flush (bytes, so that no locale can refuse a character)."""
    try:
        sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        pass


def err(text: str) -> None:
    try:
        sys.stderr.buffer.write(text.encode("utf-8", "surrogateescape"))
        sys.stderr.buffer.flush()
    except BrokenPipeError:
        pass


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write (O_APPEND), so concurrent writers interleave
    whole lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def project_slug(cwd: str) -> str:
    """The real CLI's folder name for a working directory: every character that is not an
    ASCII letter or digit becomes '-'."""
    return re.sub(r"[^A-Za-z0-9]", "-", cwd)


def read_prompt(positional: list[str]) -> str:
    if positional:
        return positional[0]
    if sys.stdin is None or sys.stdin.isatty():
        return ""
    return sys.stdin.buffer.read().decode("utf-8", "surrogateescape")


def run_git(cwd: str, args: list[str], identity: str) -> subprocess.CompletedProcess[str]:
    command = ["git"]
    email = subprocess.run(
        ["git", "config", "user.email"], cwd=cwd, capture_output=True, text=True, check=False
    ).stdout.strip()
    if not email:
        command += ["-c", f"user.name={identity}", "-c", "user.email=fake-agent@example.invalid"]
    return subprocess.run(command + args, cwd=cwd, capture_output=True, text=True, check=False)


# -- the run ---------------------------------------------------------------------------


class Run:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.started = time.monotonic()
        self.cwd = os.getcwd()
        self.log_path = os.environ.get("FAKE_CLAUDE_LOG")
        self.session_id: str | None = None
        self.mode: str | None = None
        self.prompt: str | None = None
        self.forked_from: str | None = None

    def log(self, **fields: Any) -> None:
        if not self.log_path:
            return
        record = {
            "argv": self.argv,
            "cwd": self.cwd,
            "session_id": self.session_id,
            "mode": self.mode,
            "prompt": self.prompt,
            "pid": os.getpid(),
            "time": now_iso(),
            **fields,
        }
        if self.forked_from:
            record["forked_from"] = self.forked_from
        append_line(Path(self.log_path), record)

    def main(self) -> int:
        record_dir = os.environ.get("FAKE_CLAUDE_RECORD_DIR")
        if record_dir:
            name = os.environ.get("MAPWISE_ITEM_ID", "none")
            Path(record_dir).mkdir(parents=True, exist_ok=True)
            (Path(record_dir) / f"{name}.json").write_text(json.dumps(self.argv), encoding="utf-8")
        try:
            return self.execute()
        except Exit as stop:
            err(stop.message + "\n")
            self.log(ended=True, error=stop.message, exit_code=stop.code)
            return stop.code

    def execute(self) -> int:
        opts, positional = parse_args(self.argv)
        if opts.get("help"):
            out(HELP)
            return 0
        if opts.get("version"):
            out(f"{VERSION} (Claude Code)\n")
            return 0
        if not opts.get("print"):
            raise Exit("fake_claude: only print mode is faked; pass -p/--print", 2)
        output_format = opts.get("output_format", "text")
        verbose = bool(opts.get("verbose"))
        if output_format == "stream-json" and not verbose:
            raise Exit("Error: When using --print, --output-format=stream-json requires --verbose")
        resume = opts.get("resume")
        continuing = bool(opts.get("continue"))
        fork = bool(opts.get("fork_session"))
        wanted_id = opts.get("session_id")
        if wanted_id is not None:
            if not UUID_RE.match(wanted_id):
                raise Exit("Error: Invalid session ID. Must be a valid UUID.")
            if (resume is not None or continuing) and not fork:
                raise Exit(
                    "Error: --session-id can only be used with --continue or --resume "
                    "if --fork-session is also specified."
                )
        if resume is not None and (resume is True or not UUID_RE.match(resume)):
            given = "" if resume is True else f' Provided value "{resume}" is not a valid UUID'
            raise Exit(
                "Error: --resume requires a valid session ID when used with --print. "
                "Usage: claude -p --resume <session-id>. Session IDs must be in UUID format "
                "(e.g., 550e8400-e29b-41d4-a716-446655440000)." + given
            )
        max_turns = self.positive(opts, "max_turns", "--max-turns <turns>", integer=True)
        budget = self.positive(opts, "max_budget_usd", "--max-budget-usd <amount>")
        prompt = read_prompt(positional)
        if not prompt.strip():
            raise Exit(
                "Error: Input must be provided either through stdin or as a prompt argument "
                "when using --print"
            )
        self.prompt = prompt
        knobs = Knobs("FAKE_CLAUDE_", prompt)
        home = Path(os.environ.get("FAKE_CLAUDE_HOME") or Path.home() / ".fake-claude")
        project = home / "projects" / project_slug(self.cwd)
        persist = not opts.get("no_session_persistence")

        # Which session: new, resumed, or forked from a resumed one.
        history: list[str] = []
        if resume is not None or continuing:
            if continuing and resume is None:
                found = sorted(project.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
                if not found:
                    raise Exit("No conversation found to continue")
                source = found[-1].stem
            else:
                source = str(resume).lower()
            source_path = project / f"{source}.jsonl"
            if not source_path.is_file():
                raise Exit(f"No conversation found with session ID: {resume}")
            self.mode = "resume"
            if fork:
                self.forked_from = source
                self.session_id = (wanted_id or str(uuid.uuid4())).lower()
                history = source_path.read_text(encoding="utf-8").splitlines()
            else:
                self.session_id = source
        else:
            self.mode = "new"
            self.session_id = (wanted_id or str(uuid.uuid4())).lower()
            if (project / f"{self.session_id}.jsonl").exists():
                raise Exit(f"Error: Session ID {self.session_id} is already in use.")
        session_path = project / f"{self.session_id}.jsonl"

        model = knobs.text("model") or opts.get("model") or DEFAULT_MODEL
        model = MODEL_ALIASES.get(model, model)
        # The prompt is on disk before any work, so that a run killed mid-way can be resumed.
        parent: str | None = None
        if persist:
            if history:
                session_path.parent.mkdir(parents=True, exist_ok=True)
                with session_path.open("a", encoding="utf-8") as copy:
                    copy.write("\n".join(history) + "\n")
            parent = self.transcript(
                session_path, "user", {"role": "user", "content": prompt}, None
            )
        self.log(ended=False)

        permission_mode = opts.get("permission_mode") or (
            "bypassPermissions" if opts.get("dangerously_skip_permissions") else "default"
        )
        tools = DEFAULT_TOOLS
        if opts.get("tools"):
            tools = [t for v in opts["tools"] for t in re.split(r"[,\s]+", v) if t]
        init = {
            "type": "system",
            "subtype": "init",
            "cwd": self.cwd,
            "session_id": self.session_id,
            "tools": tools,
            "mcp_servers": [],
            "model": model,
            "permissionMode": permission_mode,
            "slash_commands": [],
            "apiKeySource": "none",
            "claude_code_version": VERSION,
            "output_style": "default",
            "agents": [],
            "skills": [],
            "plugins": [],
            "uuid": str(uuid.uuid4()),
        }
        streaming = output_format == "stream-json"
        if streaming:
            out(dumps(init) + "\n")

        pause = knobs.number("sleep_resume" if self.mode == "resume" else "sleep", 0.0)
        if pause > 0:
            time.sleep(pause)

        # The agent's work.
        actions: list[tuple[str, dict[str, Any], str]] = []
        for relative in knobs.edits:
            target = Path(self.cwd) / relative
            existed = target.exists()
            target.parent.mkdir(parents=True, exist_ok=True)
            state = "resumed" if self.mode == "resume" else "new"
            with target.open("a", encoding="utf-8") as handle:
                handle.write(f"edited by session {self.session_id} ({state})\n")
            tool = "Edit" if existed else "Write"
            actions.append(
                (tool, {"file_path": str(target)}, f"The file {target} has been updated.")
            )
        if knobs.flag("commit"):
            subject = f"fake claude: {self.session_id}"
            added = run_git(self.cwd, ["add", "-A"], "Fake Claude")
            done = run_git(self.cwd, ["commit", "-q", "-m", subject], "Fake Claude")
            output = (added.stdout + added.stderr + done.stdout + done.stderr).strip()
            actions.append(
                (
                    "Bash",
                    {"command": f'git add -A && git commit -q -m "{subject}"'},
                    output or "(no output)",
                )
            )
            if done.returncode != 0 and output:
                err(output + "\n")

        # The outcome.
        subtype = (knobs.text("result") or "success").strip()
        if subtype not in RESULTS:
            raise Exit(
                f"fake_claude: knob result={subtype!r} is not one of {', '.join(RESULTS)}", 2
            )
        if self.mode == "resume" and knobs.flag("fail_resume"):
            subtype = "error_during_execution"
        turns = max(1, knobs.integer("turns", 2))
        cost = knobs.number("cost", 0.01)
        if subtype == "success" and max_turns is not None and turns > max_turns:
            subtype = "error_max_turns"
        if subtype == "success" and budget is not None and cost > budget:
            subtype = "error_max_budget_usd"
        num_turns = turns
        if subtype == "error_max_turns":
            num_turns = (max_turns if max_turns is not None else turns) + 1
        if subtype == "error_max_budget_usd" and budget is not None:
            cost = budget
        usage = {
            "input_tokens": knobs.integer("input_tokens", round(cost * 0.05 / 3e-6)),
            "cache_creation_input_tokens": knobs.integer(
                "cache_creation_tokens", round(cost * 0.15 / 3.75e-6)
            ),
            "cache_read_input_tokens": knobs.integer(
                "cache_read_tokens", round(cost * 0.30 / 0.3e-6)
            ),
            "output_tokens": knobs.integer("output_tokens", round(cost * 0.50 / 15e-6)),
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
            "service_tier": "standard",
        }
        text = knobs.text("result_text")
        messages: list[dict[str, Any]] = [init]
        tool_turns = max(0, num_turns - 1)
        while len(actions) < tool_turns:
            actions.append(("Bash", {"command": "true"}, "(no output)"))
        message_usage = {k: usage[k] for k in usage if k != "server_tool_use"}
        # Every action taken is shown; a run stopped by --max-turns shows those it had time for.
        shown = actions[:tool_turns] if subtype == "error_max_turns" else actions
        for tool, tool_input, tool_output in shown:
            tool_id = "toolu_" + uuid.uuid4().hex[:24]
            messages.append(
                self.assistant(
                    model,
                    [{"type": "tool_use", "id": tool_id, "name": tool, "input": tool_input}],
                    message_usage,
                )
            )
            messages.append(
                {
                    "type": "user",
                    "message": {
                        "role": "user",
                        "content": [
                            {"tool_use_id": tool_id, "type": "tool_result", "content": tool_output}
                        ],
                    },
                    "parent_tool_use_id": None,
                    "session_id": self.session_id,
                    "uuid": str(uuid.uuid4()),
                }
            )
        elapsed = int((time.monotonic() - self.started) * 1000) + 1
        result: dict[str, Any] = {
            "type": "result",
            "subtype": subtype,
            "is_error": subtype != "success",
            "duration_ms": elapsed,
            "duration_api_ms": max(1, int(elapsed * 0.9)),
            "num_turns": num_turns,
        }
        failure_text = ""
        if subtype == "success":
            result["result"] = prompt if text is None else text
        elif subtype == "api_error":
            result["subtype"] = "success"
            result["is_error"] = True
            result["result"] = API_ERROR_TEXT if text is None else text
        elif subtype == "error_max_turns":
            limit = max_turns if max_turns is not None else turns
            failure_text = f"Reached maximum number of turns ({limit})"
        elif subtype == "error_max_budget_usd":
            failure_text = f"Reached maximum budget (${cost:g})"
        else:
            failure_text = "Execution error" if text is None else text
        if "result" in result:
            messages.append(
                self.assistant(model, [{"type": "text", "text": result["result"]}], message_usage)
            )
        result["session_id"] = self.session_id
        result["total_cost_usd"] = cost
        result["usage"] = usage
        result["modelUsage"] = {
            model: {
                "inputTokens": usage["input_tokens"],
                "outputTokens": usage["output_tokens"],
                "cacheReadInputTokens": usage["cache_read_input_tokens"],
                "cacheCreationInputTokens": usage["cache_creation_input_tokens"],
                "webSearchRequests": 0,
                "costUSD": cost,
                "contextWindow": 200000,
            }
        }
        result["permission_denials"] = []
        if subtype == "api_error":
            result["api_error_status"] = 529
        if failure_text:
            result["errors"] = [failure_text]
        result["uuid"] = str(uuid.uuid4())
        messages.append(result)

        if persist:
            for entry in messages[1:-1]:
                parent = self.transcript(session_path, entry["type"], entry["message"], parent)

        # Output, in the requested format.
        if output_format == "text":
            if subtype == "error_max_turns":
                out(f"Error: Reached max turns ({max_turns if max_turns is not None else turns})\n")
            elif subtype == "error_max_budget_usd":
                out(f"Error: Exceeded USD budget ({cost:g})\n")
            elif subtype == "error_during_execution":
                out(f"{failure_text}\n")
            else:
                out(result["result"] + "\n")
        elif streaming:
            for entry in messages[1:]:
                out(dumps(entry) + "\n")
        elif verbose:
            out(dumps(messages) + "\n")
        else:
            out(dumps(result) + "\n")

        code = 0 if subtype == "success" else 1
        if knobs.given("exit"):
            code = knobs.integer("exit", code)
        self.log(ended=True, subtype=result["subtype"], is_error=result["is_error"], exit_code=code)
        extra = knobs.text("stderr")
        if extra:
            err(extra + "\n")
        return code

    @staticmethod
    def positive(opts: dict[str, Any], dest: str, flags: str, integer: bool = False) -> Any:
        raw = opts.get(dest)
        if raw is None:
            return None
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            value = -1
        if value <= 0:
            raise Exit(
                f"error: option '{flags}' argument '{raw}' is invalid. "
                "It must be a positive number."
            )
        return value

    def assistant(
        self, model: str, content: list[dict[str, Any]], usage: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "type": "assistant",
            "message": {
                "id": "msg_" + uuid.uuid4().hex[:24],
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage,
            },
            "parent_tool_use_id": None,
            "session_id": self.session_id,
            "uuid": str(uuid.uuid4()),
        }

    def transcript(self, path: Path, kind: str, message: dict[str, Any], parent: str | None) -> str:
        """One line of the session file, shaped like the real CLI's; returns its uuid."""
        line_id = str(uuid.uuid4())
        append_line(
            path,
            {
                "parentUuid": parent,
                "isSidechain": False,
                "userType": "external",
                "cwd": self.cwd,
                "sessionId": self.session_id,
                "version": VERSION,
                "type": kind,
                "message": message,
                "uuid": line_id,
                "timestamp": now_iso(),
            },
        )
        return line_id


if __name__ == "__main__":
    sys.exit(Run(sys.argv[1:]).main())
