"""The offline stand-ins for the agent CLIs (examples/agent/fake_claude.py and
fake_codex.py), run as real subprocesses: the flags they accept and refuse, their output
shapes, their session stores, resuming, prompt directives, and a kill mid-run.

docs/fake-agents.md says which real documentation each behaviour copies.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_CLAUDE = ROOT / "examples" / "agent" / "fake_claude.py"
FAKE_CODEX = ROOT / "examples" / "agent" / "fake_codex.py"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
OTHER_SID = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
TIMEOUT = 30

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths and signals")


class Agents:
    """Runs the fakes with their stores and logs in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "my_work.dir"  # '_' and '.' are folded into '-' in the store
        self.work.mkdir()
        self.claude_home = root / "claude-home"
        self.codex_home = root / "codex-home"
        self.claude_log = root / "claude-log.jsonl"
        self.codex_log = root / "codex-log.jsonl"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FAKE_CLAUDE_", "FAKE_CODEX_")) and k != "MAPWISE_ITEM_ID"
        }
        env.update(
            {
                "FAKE_CLAUDE_HOME": str(self.claude_home),
                "FAKE_CODEX_HOME": str(self.codex_home),
                "FAKE_CLAUDE_LOG": str(self.claude_log),
                "FAKE_CODEX_LOG": str(self.codex_log),
                "GIT_CONFIG_NOSYSTEM": "1",
            }
        )
        env.update(extra or {})
        return env

    def run(
        self,
        script: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), *args],
            cwd=cwd or self.work,
            env=self.env(env),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    def claude(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(FAKE_CLAUDE, *args, **kw)

    def codex(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(FAKE_CODEX, *args, **kw)

    def popen(
        self,
        script: Path,
        *args: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(script), *args],
            cwd=cwd or self.work,
            env=self.env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def session_file(self, session: str, cwd: Path | None = None) -> Path:
        slug = re.sub(r"[^A-Za-z0-9]", "-", str(cwd or self.work))
        return self.claude_home / "projects" / slug / f"{session}.jsonl"

    def rollouts(self, thread: str) -> list[Path]:
        return sorted(self.codex_home.glob(f"sessions/*/*/*/rollout-*-{thread}.jsonl"))


def log_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"},
    ).stdout


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    git(path, "config", "user.email", "test@example.invalid")
    git(path, "config", "user.name", "Test")
    (path / "README").write_text("hello\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "init")
    return path


@pytest.fixture
def agents(tmp_path: Path) -> Agents:
    return Agents(tmp_path)


# -- fake_claude: command line -----------------------------------------------------------


def test_claude_text_output_is_the_prompt(agents: Agents) -> None:
    # Given a prompt with shell syntax, when it is run in the default (text) format
    prompt = '/fix it\'s "quoted" $(touch PWNED) ; echo hi'
    done = agents.claude("-p", prompt)

    # Then the result text, the prompt itself by default, is all of stdout
    assert (done.returncode, done.stdout, done.stderr) == (0, prompt + "\n", "")
    assert not (agents.work / "PWNED").exists()


@pytest.mark.parametrize("order", ["flag-first", "prompt-first"])
def test_claude_json_is_one_result_object(agents: Agents, order: str) -> None:
    # Given -p before or after the prompt (it is a flag, the prompt is the positional)
    head = ["-p", "say hi"] if order == "flag-first" else ["say hi", "-p"]
    done = agents.claude(*head, "--output-format", "json", "--session-id", SID, "--model", "opus")

    # Then stdout is one line holding the documented result object
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1
    result = json.loads(done.stdout)
    assert list(result)[:6] == [
        "type",
        "subtype",
        "is_error",
        "duration_ms",
        "duration_api_ms",
        "num_turns",
    ]
    assert (result["type"], result["subtype"], result["is_error"]) == ("result", "success", False)
    assert (result["result"], result["session_id"], result["num_turns"]) == ("say hi", SID, 2)
    assert result["total_cost_usd"] == pytest.approx(0.01)
    assert set(result["usage"]) >= {
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
        "server_tool_use",
        "service_tier",
    }
    ((model, entry),) = result["modelUsage"].items()
    assert model == "claude-opus-4-1"
    assert entry["costUSD"] == pytest.approx(0.01)
    assert entry["outputTokens"] == result["usage"]["output_tokens"]
    assert result["permission_denials"] == []
    assert UUID.match(result["uuid"])
    assert "errors" not in result


def test_claude_verbose_json_is_the_list_of_messages(agents: Agents) -> None:
    done = agents.claude("-p", "go [fake:turns=3]", "--output-format", "json", "--verbose")

    assert done.returncode == 0, done.stderr
    messages = json.loads(done.stdout)
    assert isinstance(messages, list)
    init, *middle, result = messages
    assert (init["type"], init["subtype"]) == ("system", "init")
    assert init["session_id"] == result["session_id"]
    assert init["cwd"] == str(agents.work) and init["model"] == "claude-sonnet-4-5"
    assert "Bash" in init["tools"]
    assert [m["type"] for m in middle] == ["assistant", "user", "assistant", "user", "assistant"]
    assert middle[-1]["message"]["content"] == [{"type": "text", "text": "go [fake:turns=3]"}]
    assert (result["type"], result["num_turns"]) == ("result", 3)


def test_claude_stream_json_needs_verbose(agents: Agents) -> None:
    # Without --verbose: the real CLI's refusal
    refused = agents.claude("-p", "x", "--output-format", "stream-json")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        "Error: When using --print, --output-format=stream-json requires --verbose\n"
    )

    # With it: one message a line, init first, the result last
    done = agents.claude("-p", "x", "--output-format", "stream-json", "--verbose")
    assert done.returncode == 0, done.stderr
    lines = events(done.stdout)
    assert lines[0]["subtype"] == "init" and lines[-1]["type"] == "result"
    assert lines[-1]["result"] == "x"


def test_claude_accepts_every_documented_print_mode_flag(agents: Agents) -> None:
    done = agents.claude(
        "-p",
        "do it",
        "--output-format",
        "json",
        "--session-id",
        SID,
        "--model",
        "sonnet",
        "--max-turns",
        "5",
        "--permission-mode",
        "acceptEdits",
        "--append-system-prompt",
        "be brief",
        "--max-budget-usd",
        "1.5",
        "--verbose",
        "--dangerously-skip-permissions",
        "--allowed-tools",
        "Read",
        "Edit",
        "--allowedTools",
        "Bash(git:*)",
        "--add-dir",
        "..",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[-1]["session_id"] == SID


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--foo"], "error: unknown option '--foo'"),
        (["--max-turn", "3"], "error: unknown option '--max-turn'"),
        (["-x"], "error: unknown option '-x'"),
        (
            ["--output-format", "xml"],
            "error: option '--output-format <format>' argument 'xml' is invalid. "
            "Allowed choices are text, json, stream-json.",
        ),
        (
            ["--permission-mode", "yolo"],
            "error: option '--permission-mode <mode>' argument 'yolo' is invalid. "
            "Allowed choices are acceptEdits, bypassPermissions, default, dontAsk, plan.",
        ),
        (["--model"], "error: option '--model <model>' argument missing"),
        (["extra"], "error: too many arguments. Expected 1 argument but got 2."),
    ],
)
def test_claude_refuses_bad_command_lines_like_commander(
    agents: Agents, args: list[str], message: str
) -> None:
    done = agents.claude("-p", "prompt", *args)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", message + "\n")
    assert not agents.claude_home.exists()  # nothing stored


def test_claude_variadic_allowed_tools_swallow_a_prompt_after_them(agents: Agents) -> None:
    # `--allowedTools A B PROMPT` takes the prompt as one more tool, as commander does
    done = agents.claude("-p", "--allowedTools", "Read", "Edit", "the prompt")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("Error: Input must be provided either through stdin")

    # and the prompt may come on stdin
    piped = agents.claude("-p", "--allowedTools", "Read", stdin="from stdin")
    assert (piped.returncode, piped.stdout) == (0, "from stdin\n")


@pytest.mark.parametrize("bad", ["not-a-uuid", "6f1c2a3b4d5e4f608a7b9c0d1e2f3a4b"])
def test_claude_session_id_must_be_a_uuid(agents: Agents, bad: str) -> None:
    done = agents.claude("-p", "x", "--session-id", bad)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "Error: Invalid session ID. Must be a valid UUID.\n"


def test_claude_session_id_in_use_is_refused(agents: Agents) -> None:
    assert agents.claude("-p", "one", "--session-id", SID).returncode == 0
    again = agents.claude("-p", "two", "--session-id", SID, "--output-format", "json")
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr == f"Error: Session ID {SID} is already in use.\n"


def test_claude_session_id_with_resume_needs_fork_session(agents: Agents) -> None:
    assert agents.claude("-p", "one", "--session-id", SID).returncode == 0
    done = agents.claude("-p", "two", "--resume", SID, "--session-id", OTHER_SID)
    assert done.returncode == 1
    assert done.stderr == (
        "Error: --session-id can only be used with --continue or --resume if "
        "--fork-session is also specified.\n"
    )


def test_claude_resume_needs_a_uuid_in_print_mode(agents: Agents) -> None:
    done = agents.claude("-p", "x", "--resume", "my-session")
    assert done.returncode == 1
    assert done.stderr.startswith("Error: --resume requires a valid session ID when used with")
    assert 'Provided value "my-session" is not a valid UUID' in done.stderr


# -- fake_claude: the session store and resuming ---------------------------------------


def test_claude_stores_sessions_per_directory_like_the_real_cli(agents: Agents) -> None:
    done = agents.claude("-p", "remember 42", "--session-id", SID)
    assert done.returncode == 0

    # The file is projects/<cwd with every non-alphanumeric character as '->/<id>.jsonl
    path = agents.session_file(SID)
    assert "my-work-dir" in path.parent.name and path.is_file()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["type"] == "user" and lines[0]["message"]["content"] == "remember 42"
    assert {line["sessionId"] for line in lines} == {SID}
    assert lines[-1]["type"] == "assistant"


def test_claude_resume_continues_the_same_session_in_the_same_directory(agents: Agents) -> None:
    assert (
        agents.claude("-p", "first", "--session-id", SID, "--output-format", "json").returncode == 0
    )
    done = agents.claude("-p", "second", "--output-format", "json", "-r", SID)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["session_id"] == SID
    lines = [json.loads(line) for line in agents.session_file(SID).read_text().splitlines()]
    prompts = [
        line["message"]["content"]
        for line in lines
        if line["type"] == "user" and isinstance(line["message"]["content"], str)
    ]
    assert prompts == ["first", "second"]
    starts = [e for e in log_lines(agents.claude_log) if not e["ended"]]
    assert [(e["mode"], e["session_id"], e["cwd"]) for e in starts] == [
        ("new", SID, str(agents.work)),
        ("resume", SID, str(agents.work)),
    ]


def test_claude_resume_of_an_unknown_session_fails_without_output(agents: Agents) -> None:
    done = agents.claude("-p", "x", "--output-format", "json", "--resume", SID)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"No conversation found with session ID: {SID}\n"


def test_claude_sessions_do_not_resume_from_another_directory(agents: Agents) -> None:
    assert agents.claude("-p", "here", "--session-id", SID).returncode == 0
    elsewhere = agents.root / "elsewhere"
    elsewhere.mkdir()
    done = agents.claude("-p", "there", "--resume", SID, cwd=elsewhere)
    assert done.returncode == 1
    assert done.stderr == f"No conversation found with session ID: {SID}\n"


def test_claude_fork_session_makes_a_new_id_and_leaves_the_old_one(agents: Agents) -> None:
    assert agents.claude("-p", "base", "--session-id", SID).returncode == 0
    before = agents.session_file(SID).read_text()

    done = agents.claude(
        "-p", "branch", "--output-format", "json", "--resume", SID, "--fork-session"
    )
    forked = json.loads(done.stdout)["session_id"]
    named = agents.claude(
        "-p",
        "named",
        "--output-format",
        "json",
        "--resume",
        SID,
        "--fork-session",
        "--session-id",
        OTHER_SID,
    )

    assert forked != SID and UUID.match(forked)
    assert json.loads(named.stdout)["session_id"] == OTHER_SID
    assert agents.session_file(SID).read_text() == before
    assert "base" in agents.session_file(forked).read_text()
    assert "branch" in agents.session_file(forked).read_text()


def test_claude_continue_takes_the_latest_session_of_the_directory(agents: Agents) -> None:
    nothing = agents.claude("-p", "x", "-c")
    assert (nothing.returncode, nothing.stderr) == (1, "No conversation found to continue\n")
    assert agents.claude("-p", "one", "--session-id", SID).returncode == 0
    done = agents.claude("-p", "two", "-c", "--output-format", "json")
    assert json.loads(done.stdout)["session_id"] == SID


# -- fake_claude: outcomes and knobs -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "subtype", "is_error", "code", "detail"),
    [
        (
            ["[fake:turns=4]", "--max-turns", "2"],
            "error_max_turns",
            True,
            1,
            ("errors", ["Reached maximum number of turns (2)"]),
        ),
        (
            ["[fake:result=error_during_execution]"],
            "error_during_execution",
            True,
            1,
            ("errors", ["Execution error"]),
        ),
        (
            ["[fake:result=api_error]"],
            "success",
            True,
            1,
            (
                "result",
                'API Error: 529 {"type":"error","error":{"type":"overloaded_error",'
                '"message":"Overloaded"},"request_id":"req_fake000000000000000000"}',
            ),
        ),
        (
            ["[fake:cost=0.75]", "--max-budget-usd", "0.5"],
            "error_max_budget_usd",
            True,
            1,
            ("errors", ["Reached maximum budget ($0.5)"]),
        ),
        (
            ["[fake:cost=0.25]", "--max-budget-usd", "0.5"],
            "success",
            False,
            0,
            ("result", "go [fake:cost=0.25]"),
        ),
    ],
)
def test_claude_outcomes(
    agents: Agents,
    args: list[str],
    subtype: str,
    is_error: bool,
    code: int,
    detail: tuple[str, Any],
) -> None:
    prompt, *flags = args
    done = agents.claude("-p", f"go {prompt}", "--output-format", "json", *flags)
    result = json.loads(done.stdout)
    assert (done.returncode, result["subtype"], result["is_error"]) == (code, subtype, is_error)
    key, value = detail
    assert result[key] == value
    if subtype == "error_max_turns":
        assert result["num_turns"] == 3 and "result" not in result
    if subtype == "error_max_budget_usd":
        assert result["total_cost_usd"] == pytest.approx(0.5)
    ended = [e for e in log_lines(agents.claude_log) if e["ended"]]
    assert [(e["subtype"], e["exit_code"]) for e in ended] == [(result["subtype"], code)]


def test_claude_text_format_error_lines(agents: Agents) -> None:
    turns = agents.claude("-p", "x [fake:turns=3]", "--max-turns", "1")
    budget = agents.claude("-p", "x [fake:cost=2]", "--max-budget-usd", "1")
    assert (turns.returncode, turns.stdout) == (1, "Error: Reached max turns (1)\n")
    assert (budget.returncode, budget.stdout) == (1, "Error: Exceeded USD budget (1)\n")


def test_claude_directives_override_environment_knobs(agents: Agents) -> None:
    env = {
        "FAKE_CLAUDE_COST": "0.5",
        "FAKE_CLAUDE_RESULT_TEXT": "from env",
        "FAKE_CLAUDE_TURNS": "5",
        "FAKE_CLAUDE_MODEL": "claude-haiku-4-5",
    }
    plain = json.loads(agents.claude("-p", "a", "--output-format", "json", env=env).stdout)
    steered = json.loads(
        agents.claude(
            "-p",
            "b [fake:cost=0.02] [fake:result_text=done: all good] [fake:output_tokens=7]",
            "--output-format",
            "json",
            env=env,
        ).stdout
    )

    assert (plain["total_cost_usd"], plain["result"], plain["num_turns"]) == (0.5, "from env", 5)
    assert list(plain["modelUsage"]) == ["claude-haiku-4-5"]
    assert (steered["total_cost_usd"], steered["result"]) == (0.02, "done: all good")
    assert steered["usage"]["output_tokens"] == 7


def test_claude_fail_resume_and_sleep_resume(agents: Agents) -> None:
    env = {"FAKE_CLAUDE_FAIL_RESUME": "1", "FAKE_CLAUDE_SLEEP_RESUME": "0.3"}
    first = agents.claude("-p", "x", "--output-format", "json", "--session-id", SID, env=env)
    assert json.loads(first.stdout)["subtype"] == "success"

    started = time.monotonic()
    again = agents.claude("-p", "y", "--output-format", "json", "--resume", SID, env=env)
    assert time.monotonic() - started >= 0.3
    result = json.loads(again.stdout)
    assert (again.returncode, result["subtype"], result["session_id"]) == (
        1,
        "error_during_execution",
        SID,
    )


@needs_git
def test_claude_edit_and_commit_in_the_working_directory(agents: Agents) -> None:
    repo = git_repo(agents.root / "repo")
    done = agents.claude(
        "-p",
        "fix [fake:edit=src/notes.txt] [fake:commit]",
        "--session-id",
        SID,
        "--output-format",
        "stream-json",
        "--verbose",
        cwd=repo,
    )
    assert done.returncode == 0, done.stderr
    assert (repo / "src" / "notes.txt").read_text() == f"edited by session {SID} (new)\n"
    assert git(repo, "log", "-1", "--format=%s").strip() == f"fake claude: {SID}"
    assert git(repo, "status", "--porcelain") == ""
    tools = [
        block["name"]
        for line in events(done.stdout)
        if line["type"] == "assistant"
        for block in line["message"]["content"]
        if block["type"] == "tool_use"
    ]
    assert tools == ["Write", "Bash"]

    resumed = agents.claude("-p", "more [fake:edit=src/notes.txt]", "-r", SID, cwd=repo)
    assert resumed.returncode == 0
    assert (repo / "src" / "notes.txt").read_text().splitlines()[-1] == (
        f"edited by session {SID} (resumed)"
    )


def test_claude_legacy_knobs_record_exit_and_stderr(agents: Agents) -> None:
    record = agents.root / "argv"
    done = agents.claude(
        "-p",
        "say $(x)",
        env={
            "FAKE_CLAUDE_RECORD_DIR": str(record),
            "MAPWISE_ITEM_ID": "q1",
            "FAKE_CLAUDE_EXIT": "5",
            "FAKE_CLAUDE_STDERR": "oops",
        },
    )
    assert (done.returncode, done.stdout, done.stderr) == (5, "say $(x)\n", "oops\n")
    assert json.loads((record / "q1.json").read_text()) == ["-p", "say $(x)"]


def test_claude_killed_while_sleeping_leaves_a_resumable_session(agents: Agents) -> None:
    # Given a run that works for a long time
    proc = agents.popen(
        FAKE_CLAUDE,
        "-p",
        "long job [fake:sleep=60]",
        "--output-format",
        "json",
        "--session-id",
        SID,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not any(not e["ended"] for e in log_lines(agents.claude_log)):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        # When it is killed mid-run
        proc.kill()
        proc.communicate(timeout=TIMEOUT)

    # Then the session is on disk with its prompt, the log shows no end, and --resume works
    assert "long job" in agents.session_file(SID).read_text()
    assert [e["ended"] for e in log_lines(agents.claude_log)] == [False]
    done = agents.claude("-p", "carry on", "--output-format", "json", "--resume", SID)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["session_id"] == SID
    log = log_lines(agents.claude_log)
    assert [(e["mode"], e["ended"], e["session_id"]) for e in log] == [
        ("new", False, SID),
        ("resume", False, SID),
        ("resume", True, SID),
    ]
    assert log[0]["pid"] != log[1]["pid"] and log[0]["cwd"] == log[1]["cwd"]


# -- fake_codex --------------------------------------------------------------------------


def test_codex_json_events(agents: Agents) -> None:
    done = agents.codex(
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--model",
        "gpt-5",
        "--full-auto",
        "--sandbox",
        "workspace-write",
        "hello there",
    )
    assert done.returncode == 0, done.stderr
    lines = events(done.stdout)
    assert [e["type"] for e in lines] == [
        "thread.started",
        "turn.started",
        "item.completed",
        "turn.completed",
    ]
    assert UUID.match(lines[0]["thread_id"]) and lines[0]["thread_id"][14] == "7"  # UUIDv7
    assert lines[2]["item"] == {"id": "item_0", "type": "agent_message", "text": "hello there"}
    usage = lines[3]["usage"]
    assert set(usage) == {"input_tokens", "cached_input_tokens", "output_tokens"}
    assert all(isinstance(v, int) for v in usage.values())
    assert len(agents.rollouts(lines[0]["thread_id"])) == 1


def test_codex_needs_a_git_repository_unless_told(agents: Agents) -> None:
    refused = agents.codex("exec", "--json", "x")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        "Not inside a trusted directory and --skip-git-repo-check was not specified.\n"
    )


@pytest.mark.parametrize(
    ("args", "first_line", "code"),
    [
        (["exec", "--json", "--foo", "x"], "error: unexpected argument '--foo' found", 2),
        (["exec", "--json", "x", "y"], "error: unexpected argument 'y' found", 2),
        (
            ["exec", "--sandbox", "all", "x"],
            "error: invalid value 'all' for '--sandbox <SANDBOX_MODE>'",
            2,
        ),
        (
            ["exec", "--model"],
            "error: a value is required for '--model <MODEL>' but none was supplied",
            2,
        ),
        (
            ["exec", "--json", "resume", SID, "x", "--sandbox", "read-only"],
            "error: unexpected argument '--sandbox' found",
            2,
        ),
    ],
)
def test_codex_refuses_bad_command_lines_like_clap(
    agents: Agents, args: list[str], first_line: str, code: int
) -> None:
    done = agents.codex(*args, "--skip-git-repo-check")
    assert (done.returncode, done.stdout) == (code, "")
    assert done.stderr.splitlines()[0] == first_line
    assert "For more information, try '--help'." in done.stderr


def test_codex_resume_continues_the_thread(agents: Agents) -> None:
    first = events(agents.codex("exec", "--json", "--skip-git-repo-check", "one").stdout)
    thread = first[0]["thread_id"]
    # options that clap marks global may follow `resume`
    done = agents.codex(
        "exec", "--json", "resume", thread, "two", "--skip-git-repo-check", "--model", "gpt-5"
    )

    assert done.returncode == 0, done.stderr
    lines = events(done.stdout)
    assert lines[0] == {"type": "thread.started", "thread_id": thread}
    assert lines[-1]["type"] == "turn.completed"
    (rollout,) = agents.rollouts(thread)
    text = rollout.read_text()
    assert '"one"' in text and '"two"' in text
    starts = [e for e in log_lines(agents.codex_log) if not e["ended"]]
    assert [(e["mode"], e["thread_id"]) for e in starts] == [("new", thread), ("resume", thread)]


def test_codex_resume_of_an_unknown_thread(agents: Agents) -> None:
    missing = "0199a213-81c0-7800-8aa1-bbab2a035a53"
    done = agents.codex("exec", "--json", "--skip-git-repo-check", "resume", missing, "x")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "Error: thread/resume: thread/resume failed: no rollout found for thread id "
        f"{missing} (code -32600)\n"
    )

    # the older CLIs' behaviour, on request: a new thread
    fresh = agents.codex(
        "exec",
        "--json",
        "--skip-git-repo-check",
        "resume",
        missing,
        "x",
        env={"FAKE_CODEX_RESUME_UNKNOWN": "new"},
    )
    assert fresh.returncode == 0
    assert events(fresh.stdout)[0]["thread_id"] != missing


def test_codex_failure_and_its_exit_status(agents: Agents) -> None:
    failed = agents.codex(
        "exec",
        "--json",
        "--skip-git-repo-check",
        "x [fake:result=failed] [fake:error_text=model not supported]",
    )
    assert failed.returncode == 1
    lines = events(failed.stdout)
    assert [e["type"] for e in lines] == ["thread.started", "turn.started", "error", "turn.failed"]
    assert lines[-1]["error"] == {"message": "model not supported"}

    zero = agents.codex(
        "exec",
        "--json",
        "--skip-git-repo-check",
        "y [fake:result=failed]",
        env={"FAKE_CODEX_EXIT": "0"},
    )
    assert zero.returncode == 0 and events(zero.stdout)[-1]["type"] == "turn.failed"


def test_codex_fail_resume(agents: Agents) -> None:
    env = {"FAKE_CODEX_FAIL_RESUME": "1"}
    thread = events(agents.codex("exec", "--json", "--skip-git-repo-check", "a", env=env).stdout)[
        0
    ]["thread_id"]
    again = agents.codex("exec", "--json", "--skip-git-repo-check", "resume", thread, "b", env=env)
    assert again.returncode == 1 and events(again.stdout)[-1]["type"] == "turn.failed"


def test_codex_plain_output_and_last_message_file(agents: Agents) -> None:
    last = agents.root / "last.txt"
    done = agents.codex(
        "exec", "--skip-git-repo-check", "-o", str(last), "[fake:result_text=the answer]"
    )
    assert (done.returncode, done.stdout) == (0, "the answer\n")
    assert "session id: " in done.stderr
    assert last.read_text() == "the answer"  # no trailing newline


@needs_git
def test_codex_edit_and_commit_in_the_cd_directory(agents: Agents) -> None:
    repo = git_repo(agents.root / "repo")
    done = agents.codex(
        "exec", "--json", "-C", str(repo), "work [fake:edit=notes.txt] [fake:commit]"
    )
    assert done.returncode == 0, done.stderr
    lines = events(done.stdout)
    thread = lines[0]["thread_id"]
    kinds = [(e["type"], e["item"]["type"]) for e in lines if "item" in e]
    assert kinds == [
        ("item.completed", "file_change"),
        ("item.started", "command_execution"),
        ("item.completed", "command_execution"),
        ("item.completed", "agent_message"),
    ]
    assert (repo / "notes.txt").read_text() == f"edited by session {thread} (new)\n"
    assert git(repo, "log", "-1", "--format=%s").strip() == f"fake codex: {thread}"


def test_codex_thread_started_comes_before_the_work_and_a_kill_leaves_it_resumable(
    agents: Agents,
) -> None:
    proc = agents.popen(
        FAKE_CODEX, "exec", "--json", "--skip-git-repo-check", "long [fake:sleep=60]"
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        first = json.loads(lines.get(timeout=TIMEOUT))
        assert proc.poll() is None  # still working
    finally:
        proc.kill()
        proc.communicate(timeout=TIMEOUT)
    thread = first["thread_id"]
    assert first["type"] == "thread.started"
    assert [e["ended"] for e in log_lines(agents.codex_log)] == [False]

    done = agents.codex("exec", "--json", "--skip-git-repo-check", "resume", thread, "go on")
    assert done.returncode == 0, done.stderr
    assert events(done.stdout)[0]["thread_id"] == thread


def test_codex_accepts_root_options_and_prompt_on_stdin(agents: Agents) -> None:
    done = agents.codex(
        "-a",
        "never",
        "exec",
        "--json",
        "--skip-git-repo-check",
        "-c",
        'model_reasoning_effort="low"',
        "-",
        stdin="from stdin",
    )
    assert done.returncode == 0, done.stderr
    assert events(done.stdout)[2]["item"]["text"] == "from stdin"
