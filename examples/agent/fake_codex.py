#!/usr/bin/env python3
"""An offline stand-in for the OpenAI Codex CLI's non-interactive mode (`codex exec`).

It parses its command line like the real CLI (clap rules and wordings), keeps a session
store laid out like the real one, prints the documented `--json` event stream (or, without
`--json`, the final message on stdout and activity on stderr), and does on request what an
agent does to a checkout: edit a file, commit. Nothing goes to the network. Standard
library only, Python 3.11+.

    fake_codex.py exec --json [--model M] [--skip-git-repo-check] [--sandbox MODE] [-C DIR] PROMPT
    fake_codex.py exec --json resume THREAD_ID PROMPT

Behaviour is configured by FAKE_CODEX_* environment variables, overridden per run by
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

VERSION = "0.130.0"
DIRECTIVE_RE = re.compile(r"\[fake:([A-Za-z_][A-Za-z0-9_]*)(?:=([^\]]*))?\]")
DEFAULT_MODEL = "gpt-5-codex"
DEFAULT_FAILURE = "We're currently experiencing high demand, which may cause temporary errors."
EXEC_USAGE = "Usage: codex exec [OPTIONS] [PROMPT]\n       codex exec [OPTIONS] <COMMAND> [ARGS]"
RESUME_USAGE = "Usage: codex exec resume [OPTIONS] [SESSION_ID] [PROMPT]"

# -- the command line, clap style --------------------------------------------------------
# name -> (dest, display, takes_value, choices, scope); scope: "global" (also after
# `resume`), "exec" (only before `resume`), "resume" (only after it), "root" (before `exec`).
SANDBOX = ("read-only", "workspace-write", "danger-full-access")
APPROVAL = ("untrusted", "on-failure", "on-request", "never")
COLOR = ("always", "never", "auto")
SPECS: list[tuple[list[str], str, str, bool, tuple[str, ...] | None, str]] = [
    (["-c", "--config"], "config", "--config <key=value>", True, None, "global"),
    (["--enable"], "enable", "--enable <FEATURE>", True, None, "global"),
    (["--disable"], "disable", "--disable <FEATURE>", True, None, "global"),
    (["-m", "--model"], "model", "--model <MODEL>", True, None, "global"),
    (["--json", "--experimental-json"], "json", "--json", False, None, "global"),
    (
        ["-o", "--output-last-message"],
        "last_message",
        "--output-last-message <FILE>",
        True,
        None,
        "global",
    ),
    (
        ["--skip-git-repo-check"],
        "skip_git_repo_check",
        "--skip-git-repo-check",
        False,
        None,
        "global",
    ),
    (["--ephemeral"], "ephemeral", "--ephemeral", False, None, "global"),
    (["--ignore-user-config"], "ignore_user_config", "--ignore-user-config", False, None, "global"),
    (["--ignore-rules"], "ignore_rules", "--ignore-rules", False, None, "global"),
    (["--full-auto"], "full_auto", "--full-auto", False, None, "global"),
    (
        ["--dangerously-bypass-approvals-and-sandbox", "--yolo"],
        "bypass",
        "--dangerously-bypass-approvals-and-sandbox",
        False,
        None,
        "global",
    ),
    (["-i", "--image"], "image", "--image <FILE>", True, None, "exec"),
    (["--oss"], "oss", "--oss", False, None, "exec"),
    (["--local-provider"], "local_provider", "--local-provider <OSS_PROVIDER>", True, None, "exec"),
    (["-p", "--profile"], "profile", "--profile <CONFIG_PROFILE>", True, None, "exec"),
    (["-s", "--sandbox"], "sandbox", "--sandbox <SANDBOX_MODE>", True, SANDBOX, "exec"),
    (["-C", "--cd"], "cd", "--cd <DIR>", True, None, "exec"),
    (["--add-dir"], "add_dir", "--add-dir <DIR>", True, None, "exec"),
    (["--output-schema"], "output_schema", "--output-schema <FILE>", True, None, "exec"),
    (["--color"], "color", "--color <COLOR>", True, COLOR, "exec"),
    (
        ["-a", "--ask-for-approval"],
        "approval",
        "--ask-for-approval <APPROVAL_POLICY>",
        True,
        APPROVAL,
        "root",
    ),
    (["--search"], "search", "--search", False, None, "root"),
    (["--last"], "last", "--last", False, None, "resume"),
    (["--all"], "all", "--all", False, None, "resume"),
    (["-i", "--image"], "image", "--image <FILE>", True, None, "resume"),
    (["-h", "--help"], "help", "--help", False, None, "any"),
    (["-V", "--version"], "version", "--version", False, None, "any"),
]


class Exit(Exception):
    """Stop with ``message`` on stderr and exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def table(level: str) -> dict[str, tuple[str, str, bool, tuple[str, ...] | None]]:
    """The options accepted at one level of the command line."""
    scopes = {
        "root": ("root", "global", "exec", "any"),
        "exec": ("global", "exec", "any"),
        "resume": ("global", "resume", "any"),
    }[level]
    names: dict[str, tuple[str, str, bool, tuple[str, ...] | None]] = {}
    for flags, dest, display, takes_value, choices, scope in SPECS:
        if scope in scopes:
            for flag in flags:
                names.setdefault(flag, (dest, display, takes_value, choices))
    return names


def unexpected(arg: str, usage: str, tip: bool = True) -> Exit:
    text = f"error: unexpected argument '{arg}' found\n\n"
    if tip and arg.startswith("-"):
        text += f"  tip: to pass '{arg}' as a value, use '-- {arg}'\n\n"
    return Exit(f"{text}{usage}\n\nFor more information, try '--help'.", 2)


def parse_level(
    args: list[str], level: str, usage: str, stop_at: tuple[str, ...]
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Options and positionals of one level, up to the first positional in ``stop_at`` (a
    subcommand); returns (options, positionals, the rest from the subcommand on)."""
    names = table(level)
    opts: dict[str, Any] = {}
    positional: list[str] = []
    queue = list(args)
    while queue:
        arg = queue.pop(0)
        if arg == "--":
            positional.extend(queue)
            return opts, positional, []
        if not arg.startswith("-") or arg == "-":
            if arg in stop_at:
                return opts, positional, [arg, *queue]
            positional.append(arg)
            continue
        inline: str | None = None
        if arg.startswith("--"):
            name, eq, rest = arg.partition("=")
            inline = rest if eq else None
        else:
            name, rest = arg[:2], arg[2:]
            inline = rest or None
        spec = names.get(name)
        if spec is None:
            raise unexpected(arg, usage)
        dest, display, takes_value, choices = spec
        if not takes_value:
            if inline is not None and arg.startswith("--"):
                raise Exit(
                    f"error: unexpected value '{inline}' for '{display}' found; no more were "
                    "expected\n\n" + usage + "\n\nFor more information, try '--help'.",
                    2,
                )
            if inline is not None:  # -xy: clap reads short flags together
                queue.insert(0, "-" + inline)
            opts[dest] = True
            continue
        if inline is not None:
            value = inline
        elif queue and not (queue[0].startswith("-") and queue[0] != "-"):
            value = queue.pop(0)
        else:
            raise Exit(
                f"error: a value is required for '{display}' but none was supplied\n\n"
                "For more information, try '--help'.",
                2,
            )
        if choices and value not in choices:
            raise Exit(
                f"error: invalid value '{value}' for '{display}'\n"
                f"  [possible values: {', '.join(choices)}]\n\nFor more information, try '--help'.",
                2,
            )
        if dest in ("config", "enable", "disable", "image", "add_dir"):
            opts.setdefault(dest, []).append(value)
        else:
            opts[dest] = value
    return opts, positional, []


def parse_args(argv: list[str]) -> dict[str, Any]:
    """`[ROOT OPTIONS] exec [OPTIONS] [PROMPT]`, or with `resume [OPTIONS] [ID] [PROMPT]`."""
    root, positional, rest = parse_level(
        argv,
        "root",
        "Usage: codex [OPTIONS] [PROMPT]\n       codex [OPTIONS] <COMMAND> [ARGS]",
        ("exec", "e"),
    )
    if root.get("version"):
        return {"version": True}
    if not rest:
        if root.get("help"):
            return {"help": True}
        raise Exit(
            "fake_codex: only `codex exec` (non-interactive mode) is faked; got "
            + (" ".join(positional) if positional else "no subcommand"),
            2,
        )
    opts, positional, sub = parse_level(rest[1:], "exec", EXEC_USAGE, ("resume",))
    merged = {**root, **opts}
    merged["resume"] = False
    if len(positional) > 1:
        raise unexpected(positional[1], EXEC_USAGE, tip=False)
    merged["prompt"] = positional[0] if positional else None
    if sub:
        ropts, rpos, _ = parse_level(sub[1:], "resume", RESUME_USAGE, ())
        if len(rpos) > 2:
            raise unexpected(rpos[2], RESUME_USAGE, tip=False)
        for key, value in ropts.items():
            if isinstance(value, list):
                merged.setdefault(key, [])
                merged[key] = [*merged[key], *value]
            else:
                merged[key] = value
        merged["resume"] = True
        if ropts.get("last") and len(rpos) < 2:
            # `resume --last PROMPT`: the positional is the prompt, not an id
            merged["session_id"] = None
            if rpos:
                merged["prompt"] = rpos[0]
        else:
            merged["session_id"] = rpos[0] if rpos else None
            if len(rpos) > 1:
                merged["prompt"] = rpos[1]
        if not merged.get("session_id") and not merged.get("last"):
            raise Exit(
                "error: the following required arguments were not provided:\n  <SESSION_ID>\n\n"
                + RESUME_USAGE
                + "\n\nFor more information, try '--help'.",
                2,
            )
    return merged


HELP = f"""Run Codex non-interactively

(This is fake_codex.py {VERSION}, an offline stand-in for `codex exec`. See
docs/fake-agents.md.)

{EXEC_USAGE}

Commands:
  resume  Resume a previous session by id or pick the most recent with --last

Options:
{chr(10).join("  " + ", ".join(s[0]) for s in SPECS if s[5] in ("global", "exec", "any"))}
"""


# -- knobs -------------------------------------------------------------------------------


class Knobs:
    """FAKE_CODEX_<KEY> from the environment, overridden by `[fake:key=value]` directives."""

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
            raise Exit(f"fake_codex: knob {key}={value!r} is not a number", 2) from None

    def integer(self, key: str, default: int) -> int:
        return int(self.number(key, default))

    def flag(self, key: str) -> bool:
        return self.values.get(key, "0").strip().lower() not in ("", "0", "false", "no", "off")


# -- small helpers -----------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def out(text: str) -> None:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def uuid7() -> str:
    """A time-ordered UUID (version 7), the shape of the real CLI's thread ids."""
    value = (int(time.time() * 1000) & ((1 << 48) - 1)) << 80
    value |= int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


def inside_git_worktree(path: Path) -> bool:
    return any((folder / ".git").exists() for folder in (path, *path.parents))


def run_git(cwd: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    command = ["git"]
    email = subprocess.run(
        ["git", "config", "user.email"], cwd=cwd, capture_output=True, text=True, check=False
    ).stdout.strip()
    if not email:
        command += ["-c", "user.name=Fake Codex", "-c", "user.email=fake-agent@example.invalid"]
    return subprocess.run(command + args, cwd=cwd, capture_output=True, text=True, check=False)


def session_meta(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as handle:
            first = json.loads(handle.readline())
        return first.get("payload", {}) if first.get("type") == "session_meta" else {}
    except (OSError, ValueError):
        return {}


# -- the run -----------------------------------------------------------------------------


class Run:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.started = time.monotonic()
        self.cwd = os.getcwd()
        self.log_path = os.environ.get("FAKE_CODEX_LOG")
        self.thread_id: str | None = None
        self.mode: str | None = None
        self.prompt: str | None = None
        self.next_item = 0

    def log(self, **fields: Any) -> None:
        if self.log_path:
            append_line(
                Path(self.log_path),
                {
                    "argv": self.argv,
                    "cwd": self.cwd,
                    "thread_id": self.thread_id,
                    "session_id": self.thread_id,
                    "mode": self.mode,
                    "prompt": self.prompt,
                    "pid": os.getpid(),
                    "time": now_iso(),
                    **fields,
                },
            )

    def main(self) -> int:
        record_dir = os.environ.get("FAKE_CODEX_RECORD_DIR")
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

    def item(self, kind: str, **fields: Any) -> dict[str, Any]:
        made = {"id": f"item_{self.next_item}", "type": kind, **fields}
        self.next_item += 1
        return made

    def execute(self) -> int:
        opts = parse_args(self.argv)
        if opts.get("version"):
            out(f"codex-cli {VERSION}\n")
            return 0
        if opts.get("help"):
            out(HELP)
            return 0
        if opts.get("full_auto"):
            err("warning: `--full-auto` is deprecated; use `--sandbox workspace-write` instead.\n")
        workdir = Path(self.cwd)
        if opts.get("cd"):
            workdir = (workdir / opts["cd"]).resolve()
            if not workdir.is_dir():
                raise Exit(f"Error: No such file or directory (os error 2): {opts['cd']}")
        self.cwd = str(workdir)
        if not opts.get("skip_git_repo_check") and not inside_git_worktree(workdir):
            raise Exit(
                "Not inside a trusted directory and --skip-git-repo-check was not specified."
            )
        prompt = opts.get("prompt")
        if prompt is None or prompt == "-":
            if prompt is None and (sys.stdin is None or sys.stdin.isatty()):
                raise Exit(
                    "No prompt provided. Either specify one as an argument or pipe the prompt "
                    "into stdin."
                )
            err("Reading prompt from stdin...\n")
            prompt = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
            if not prompt.strip():
                raise Exit("No prompt provided via stdin.")
        self.prompt = prompt
        knobs = Knobs("FAKE_CODEX_", prompt)
        home = Path(os.environ.get("FAKE_CODEX_HOME") or Path.home() / ".fake-codex")
        sessions = home / "sessions"
        model = knobs.text("model") or opts.get("model") or DEFAULT_MODEL
        sandbox = opts.get("sandbox") or (
            "danger-full-access"
            if opts.get("bypass")
            else "workspace-write"
            if opts.get("full_auto")
            else "read-only"
        )
        persist = not opts.get("ephemeral")

        # Which thread: new, or resumed from the store.
        rollout: Path | None = None
        if opts["resume"]:
            wanted = opts.get("session_id")
            found: list[Path] = []
            if wanted:
                found = sorted(sessions.glob(f"*/*/*/rollout-*-{wanted.lower()}.jsonl"))
            else:  # --last: the newest session of this directory (of any with --all)
                candidates = sorted(
                    sessions.glob("*/*/*/rollout-*.jsonl"), key=lambda p: p.stat().st_mtime
                )
                found = [
                    p
                    for p in candidates
                    if opts.get("all") or session_meta(p).get("cwd") == self.cwd
                ][-1:]
            if found:
                rollout = found[-1]
                self.thread_id = str(session_meta(rollout).get("id") or wanted)
                self.mode = "resume"
            elif wanted and (knobs.text("resume_unknown") or "error") != "new":
                raise Exit(
                    f"Error: thread/resume: thread/resume failed: no rollout found for thread id "
                    f"{wanted} (code -32600)"
                )
            elif not wanted:
                raise Exit("Error: no previous session found to resume with --last")
        if rollout is None:
            self.mode = "new"
            self.thread_id = uuid7()
            stamp = datetime.now()
            rollout = (
                sessions
                / stamp.strftime("%Y/%m/%d")
                / (f"rollout-{stamp.strftime('%Y-%m-%dT%H-%M-%S')}-{self.thread_id}.jsonl")
            )
            if persist:
                append_line(
                    rollout,
                    {
                        "timestamp": now_iso(),
                        "type": "session_meta",
                        "payload": {
                            "id": self.thread_id,
                            "timestamp": now_iso(),
                            "cwd": self.cwd,
                            "originator": "codex_exec",
                            "cli_version": VERSION,
                            "source": "exec",
                            "model_provider": "openai",
                        },
                    },
                )
        # The prompt is on disk before any work, so that a run killed mid-way can be resumed.
        if persist:
            append_line(
                rollout,
                {
                    "timestamp": now_iso(),
                    "type": "turn_context",
                    "payload": {
                        "cwd": self.cwd,
                        "approval_policy": opts.get("approval", "never"),
                        "sandbox_policy": {"type": sandbox},
                        "model": model,
                    },
                },
            )
            append_line(
                rollout,
                {
                    "timestamp": now_iso(),
                    "type": "response_item",
                    "payload": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": prompt}],
                    },
                },
            )
        self.log(ended=False)

        as_json = bool(opts.get("json"))
        if as_json:
            out(dumps({"type": "thread.started", "thread_id": self.thread_id}) + "\n")
            out(dumps({"type": "turn.started"}) + "\n")
        else:
            err(
                f"OpenAI Codex v{VERSION} (fake)\n--------\nworkdir: {self.cwd}\nmodel: {model}\n"
                f"provider: openai\napproval: {opts.get('approval', 'never')}\nsandbox: {sandbox}\n"
                f"session id: {self.thread_id}\n--------\nuser\n{prompt}\n\n"
            )

        pause = knobs.number("sleep_resume" if self.mode == "resume" else "sleep", 0.0)
        if pause > 0:
            time.sleep(pause)

        # The agent's work, reported as items.
        events: list[dict[str, Any]] = []
        for relative in knobs.edits:
            target = workdir / relative
            existed = target.exists()
            target.parent.mkdir(parents=True, exist_ok=True)
            state = "resumed" if self.mode == "resume" else "new"
            with target.open("a", encoding="utf-8") as handle:
                handle.write(f"edited by session {self.thread_id} ({state})\n")
            events.append(
                {
                    "type": "item.completed",
                    "item": self.item(
                        "file_change",
                        changes=[{"path": str(target), "kind": "update" if existed else "add"}],
                        status="completed",
                    ),
                }
            )
        if knobs.flag("commit"):
            message = f"fake codex: {self.thread_id}"
            command = f"bash -lc 'git add -A && git commit -q -m \"{message}\"'"
            started = self.item(
                "command_execution",
                command=command,
                aggregated_output="",
                exit_code=None,
                status="in_progress",
            )
            events.append({"type": "item.started", "item": started})
            added = run_git(workdir, ["add", "-A"])
            done = run_git(workdir, ["commit", "-q", "-m", message])
            code = added.returncode or done.returncode
            output = added.stdout + added.stderr + done.stdout + done.stderr
            events.append(
                {
                    "type": "item.completed",
                    "item": {
                        **started,
                        "aggregated_output": output,
                        "exit_code": code,
                        "status": "completed" if code == 0 else "failed",
                    },
                }
            )

        failed = (knobs.text("result") or "success").strip() in ("failed", "failure", "error")
        if self.mode == "resume" and knobs.flag("fail_resume"):
            failed = True
        text = knobs.text("result_text")
        final = prompt if text is None else text
        usage = {
            "input_tokens": knobs.integer("input_tokens", 2400),
            "cached_input_tokens": knobs.integer("cached_input_tokens", 2048),
            "output_tokens": knobs.integer("output_tokens", 120),
        }
        if failed:
            message = knobs.text("error_text") or DEFAULT_FAILURE
            events.append({"type": "error", "message": message})
            events.append({"type": "turn.failed", "error": {"message": message}})
        else:
            events.append(
                {"type": "item.completed", "item": self.item("agent_message", text=final)}
            )
            events.append({"type": "turn.completed", "usage": usage})

        if persist:
            for event in events:
                if event["type"] == "item.completed" and event["item"]["type"] == "agent_message":
                    append_line(
                        rollout,
                        {
                            "timestamp": now_iso(),
                            "type": "response_item",
                            "payload": {
                                "type": "message",
                                "role": "assistant",
                                "content": [{"type": "output_text", "text": final}],
                            },
                        },
                    )
            append_line(
                rollout,
                {
                    "timestamp": now_iso(),
                    "type": "event_msg",
                    "payload": {
                        "type": "token_count",
                        "info": {"last_token_usage": usage},
                    }
                    if not failed
                    else {"type": "error", "message": events[-1]["error"]["message"]},
                },
            )

        if as_json:
            for event in events:
                out(dumps(event) + "\n")
        elif failed:
            err(f"ERROR: {events[-1]['error']['message']}\n")
        else:
            total = usage["input_tokens"] + usage["output_tokens"]
            err(f"codex\n{final}\ntokens used\n{total}\n")
            out(final + "\n")
        if opts.get("last_message") and not failed:
            Path(opts["last_message"]).write_text(final, encoding="utf-8")

        code = 1 if failed else 0
        if knobs.given("exit"):
            code = knobs.integer("exit", code)
        self.log(ended=True, status="failed" if failed else "completed", exit_code=code)
        extra = knobs.text("stderr")
        if extra:
            err(extra + "\n")
        return code


if __name__ == "__main__":
    sys.exit(Run(sys.argv[1:]).main())
