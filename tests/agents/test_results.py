"""Agent steps end to end: ``mapwise run`` in a subprocess with the fake claude
(examples/agent/fake_claude.py, docs/fake-agents.md) or with tiny stand-ins that print no
result at all; what the agent was told (its argv, from ``FAKE_CLAUDE_LOG``), what was
read from it (the ``agent_runs`` ledger, captures, the DLQ), and where its cost shows
(``status``, ``status --items``, ``jobs``, ``dlq list``, ``dlq show``, the end of ``run``).
"""

from __future__ import annotations

import json
import shlex
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from helpers.project import CliRun, Project, mapreduce, run_main

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

MB = 1024 * 1024


@pytest.fixture
def claude_log(project: Project, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake claude's invocation log (one JSON line at the start and one at the end)."""
    path = project.root / "claude-log.jsonl"
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(path))
    return path


def log_lines(path: Path, *, ended: bool | None = None) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if ended is None or line["ended"] is ended]


def started_by_prompt(path: Path) -> dict[str, dict[str, Any]]:
    return {line["prompt"]: line for line in log_lines(path, ended=False)}


def run(project: Project, spec: dict[str, Any], items: list[Any], *extra: str) -> CliRun:
    project.workflow(spec, items=items)
    return project.run_cli("--job-id", "j", *extra)


def agent_runs(project: Project) -> list[dict[str, Any]]:
    return project.db("j").rows(
        "SELECT r.*, i.item_id FROM agent_runs r JOIN items i ON i.idx = r.item_idx"
        " ORDER BY r.item_idx, r.id"
    )


def dlq_entries(project: Project) -> dict[str, dict[str, Any]]:
    listed = project.inspect("dlq", "list", "j", "--json")
    assert listed.returncode == 0, listed.stderr
    return {entry["item_id"]: entry for entry in listed.json()}


def stand_in(project: Project, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Point MAPWISE_CLAUDE at a small Python script (it gets claude's argv, unread)."""
    script = project.write("stand_in.py", body)
    monkeypatch.setenv("MAPWISE_CLAUDE", shlex.join([sys.executable, str(script)]))


# -- what the agent is told ----------------------------------------------------------------


def test_claude_options_reach_the_cli_and_its_session_is_the_recorded_one(
    project: Project, claude_log: Path
) -> None:
    # Given a claude step with every option, its result captured by a later step, and a
    # last step that fails for item b (so that b is in the DLQ with its session)
    spec = mapreduce(
        [
            {
                "claude": "Fix ${item.name} [fake:result_text=fixed-${item.name}]",
                "model": "sonnet",
                "max_turns": 5,
                "allowed_tools": "Read,Edit",
                "permission_mode": "acceptEdits",
                "append_system_prompt": "You work on ${item.name}.",
                "args": ["--add-dir", "${item.name}-dir"],
                "capture": "answer",
            },
            'printf "%s" "${answer}" > "answer-${item_id}"',
            "test ${item.name} != b",
        ],
        id="${item.name}",
        retry={"max_attempts": 1},
    )

    # When it runs
    done = run(project, spec, [{"name": "a"}, {"name": "b"}])

    # Then each run got the options in the contract's order, with a fresh session UUID
    assert done.returncode == 1, done.stderr
    started = started_by_prompt(claude_log)
    sessions: dict[str, str] = {}
    for name in ("a", "b"):
        prompt = f"Fix {name} [fake:result_text=fixed-{name}]"
        line = started[prompt]
        sid = line["session_id"]
        assert str(uuid.UUID(sid)) == sid
        assert line["argv"] == [
            "-p",
            prompt,
            "--output-format",
            "json",
            "--session-id",
            sid,
            "--model",
            "sonnet",
            "--max-turns",
            "5",
            "--permission-mode",
            "acceptEdits",
            "--append-system-prompt",
            f"You work on {name}.",
            "--allowedTools",
            "Read",
            "Edit",
            "--add-dir",
            f"{name}-dir",
        ]
        assert (line["mode"], line["cwd"]) == ("new", str(project.root))
        sessions[name] = sid
    assert sessions["a"] != sessions["b"]

    # And the session is the one the claim recorded (attempts.sessions), the ledger's,
    # and the one dlq show names
    db = project.db("j")
    for name, sid in sessions.items():
        [attempt] = db.attempts(name)
        assert json.loads(attempt["sessions"]) == {"0": sid}
    ledger = {r["item_id"]: r for r in agent_runs(project)}
    assert {name: r["session_id"] for name, r in ledger.items()} == sessions
    assert all(r["result_read"] == 1 and r["subtype"] == "success" for r in ledger.values())
    assert ledger["a"]["model"] == "claude-sonnet-4-5"  # the alias as the fake reports it
    shown = project.inspect("dlq", "show", "j", "b")
    assert shown.returncode == 0, shown.stderr
    assert f"step 1 claude session {sessions['b']}: success" in shown.stdout
    status = project.inspect("status", "j", "--json").json()
    assert (status["cost"]["sessions"], status["cost"]["agent_runs"]) == (2, 2)

    # And the result text was captured into ${answer} of the later step
    assert project.read("answer-a") == "fixed-a"
    assert project.read("answer-b") == "fixed-b"


def test_prompt_starting_with_a_dash_is_passed_after_double_dash(
    project: Project, claude_log: Path
) -> None:
    spec = mapreduce([{"claude": "--${item.name} is not an option", "capture": "said"}, "true"])
    done = run(project, spec, [{"name": "help"}])
    assert done.returncode == 0, done.stderr
    [line] = log_lines(claude_log, ended=True)
    assert line["argv"][:2] == ["-p", "--output-format"]
    assert line["argv"][-2:] == ["--", "--help is not an option"]
    assert line["subtype"] == "success"
    [step] = [s for s in project.db("j").steps() if s["step_index"] == 0]
    assert step["captured"] == "--help is not an option"


# -- what is read from it --------------------------------------------------------------------


def test_is_error_with_exit_0_is_an_agent_error(project: Project, claude_log: Path) -> None:
    # Given an agent that reports an API error (is_error true, subtype success) and exits 0
    spec = mapreduce(
        [
            {"claude": "Fix ${item.name} [fake:result=api_error] [fake:exit=0] [fake:cost=0.05]"},
            "touch after-${item_id}",
        ],
        id="${item.name}",
        retry={"max_attempts": 1},
    )

    # When it runs
    done = run(project, spec, [{"name": "a"}])

    # Then the process exited 0, but the item is in the DLQ with error kind agent_error
    assert done.returncode == 1, done.stderr
    [end] = log_lines(claude_log, ended=True)
    assert (end["exit_code"], end["is_error"], end["subtype"]) == (0, True, "success")
    entry = dlq_entries(project)["a"]
    assert (entry["error_kind"], entry["exit_code"]) == ("agent_error", 0)
    assert entry["last_error"].startswith("step 1 agent error: is_error: API Error: 529")
    assert entry["cost"]["usd"] == pytest.approx(0.05)
    assert not project.path("after-a").exists()  # the next step never ran
    [row] = agent_runs(project)
    assert (row["result_read"], row["is_error"], row["subtype"]) == (1, 1, "success")
    assert row["cost_usd"] == pytest.approx(0.05)


def test_error_max_turns_is_an_agent_error_with_its_detail(
    project: Project, claude_log: Path
) -> None:
    # Given a step limited to 1 turn whose agent needs 3 (the CLI ends error_max_turns, exit 1)
    spec = mapreduce(
        [{"claude": "Fix ${item.name} [fake:turns=3]", "max_turns": 1}],
        id="${item.name}",
        retry={"max_attempts": 1},
    )

    done = run(project, spec, [{"name": "a"}])

    # Then agent_error (not exit_code), with the subtype and the CLI's words as detail
    assert done.returncode == 1, done.stderr
    [end] = log_lines(claude_log, ended=True)
    assert (end["exit_code"], end["subtype"]) == (1, "error_max_turns")
    entry = dlq_entries(project)["a"]
    assert (entry["error_kind"], entry["exit_code"]) == ("agent_error", 1)
    assert entry["last_error"] == (
        "step 1 agent error: error_max_turns: Reached maximum number of turns (1)"
    )
    [row] = agent_runs(project)
    assert (row["subtype"], row["is_error"], row["result_read"], row["turns"]) == (
        "error_max_turns",
        1,
        1,
        2,
    )
    [attempt] = project.db("j").attempts("a")
    assert attempt["error_kind"] == "agent_error"
    assert "error_max_turns: Reached maximum number of turns (1)" in attempt["stderr_tail"]


@pytest.mark.parametrize(
    "args",
    [["--output-format", "stream-json", "--verbose"], ["--verbose"]],
    ids=["stream-json", "json-verbose"],
)
def test_other_output_formats_are_read(project: Project, claude_log: Path, args: list[str]) -> None:
    # Given args that change the output: stream-json lines, or json --verbose (an array)
    spec = mapreduce(
        [
            {"claude": "Do ${item.name} [fake:cost=0.07]", "args": args, "capture": "said"},
            'printf "%s" "${said}" > said',
        ]
    )

    done = run(project, spec, [{"name": "x"}])

    # Then the fake took the last --output-format, and the result was read from it
    assert done.returncode == 0, done.stderr
    [end] = log_lines(claude_log, ended=True)
    assert end["argv"][-len(args) :] == args
    assert end["argv"].count("--output-format") == 1 + args.count("--output-format")
    assert end["subtype"] == "success"
    [row] = agent_runs(project)
    assert (row["result_read"], row["subtype"], row["turns"]) == (1, "success", 2)
    assert row["cost_usd"] == pytest.approx(0.07)
    assert project.read("said") == "Do x [fake:cost=0.07]"
    assert project.inspect("status", "j", "--json").json()["cost"]["usd"] == pytest.approx(0.07)


NO_RESULT = """\
import os, sys
print("I did it, in plain words.")
sys.exit(int(os.environ.get("CODE", "0")))
"""


def test_no_result_lets_the_exit_status_decide(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an "agent" that prints plain text, exiting 0 for item ok and 3 for item bad
    stand_in(project, monkeypatch, NO_RESULT)
    spec = mapreduce(
        [{"claude": "Do ${item.name}", "env": {"CODE": "${item.code}"}}, "touch ran-${item_id}"],
        id="${item.name}",
        retry={"max_attempts": 1},
    )

    done = run(project, spec, [{"name": "ok", "code": 0}, {"name": "bad", "code": 3}])

    # Then exit 0 succeeded and exit 3 is an exit_code failure; both are on the ledger
    # with no result read and no cost
    assert done.returncode == 1, done.stderr
    db = project.db("j")
    assert db.statuses() == {"ok": "succeeded", "bad": "dlq"}
    assert project.path("ran-ok").exists() and not project.path("ran-bad").exists()
    entry = dlq_entries(project)["bad"]
    assert (entry["error_kind"], entry["exit_code"]) == ("exit_code", 3)
    ledger = {r["item_id"]: r for r in agent_runs(project)}
    for name in ("ok", "bad"):
        row = ledger[name]
        assert (row["result_read"], row["is_error"], row["subtype"]) == (0, 0, None)
        assert (row["cost_usd"], row["turns"], row["input_tokens"]) == (None, 0, 0)
        [attempt] = db.attempts(name)
        assert json.loads(attempt["sessions"]) == {"0": row["session_id"]}
    steps = {(s["attempt_id"], s["step_index"]): s for s in db.steps() if s["step_index"] == 0}
    tails = [s["stderr_tail"] or "" for s in steps.values()]
    assert all("no result was read" in tail for tail in tails), tails


GARBAGE = """\
import os, sys, json
kind = os.environ["KIND"]
out = sys.stdout.buffer
if kind == "cut":
    out.write(b'{"type":"result","subtype":"success","is_error":false,"total_cost_usd":0.5,"res')
elif kind == "nested":
    out.write(b"[" * 100000 + b"\\n" + b"{" * 100000)
elif kind == "binary":
    out.write(bytes(range(256)) * 64 + b"\\n\\xff\\xfe{\\"type\\":\\"result\\"\\xc3\\n")
elif kind == "huge":
    line = b"noise " * 40 + b"\\n"
    for _ in range(6 * 1024 * 1024 // len(line)):
        out.write(line)
    result = {"type": "result", "subtype": "success", "is_error": False, "result": "at last",
              "total_cost_usd": 0.25, "num_turns": 4, "session_id": sys.argv[-1]}
    out.write(json.dumps(result).encode() + b"\\n")
out.flush()
"""


def test_garbage_and_huge_output_never_break_the_job(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an "agent" that prints a cut result object, JSON nested 100000 deep, bytes
    # that are no UTF-8, or 6 MB of noise before a result line, and exits 0
    stand_in(project, monkeypatch, GARBAGE)
    kinds = ["cut", "nested", "binary", "huge"]
    spec = mapreduce(
        [{"claude": "Do ${item.kind}", "env": {"KIND": "${item.kind}"}, "capture": "said"}],
        id="${item.kind}",
        retry={"max_attempts": 1},
    )

    done = run(project, spec, [{"kind": k} for k in kinds])

    # Then every item succeeded on its exit status; only the huge one's result was read
    # (from the tail of its output), with its cost
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert project.db("j").statuses() == dict.fromkeys(kinds, "succeeded")
    ledger = {r["item_id"]: r for r in agent_runs(project)}
    assert {k: ledger[k]["result_read"] for k in kinds} == {
        "cut": 0,
        "nested": 0,
        "binary": 0,
        "huge": 1,
    }
    assert ledger["huge"]["cost_usd"] == pytest.approx(0.25)
    assert ledger["huge"]["turns"] == 4
    assert ledger["cut"]["cost_usd"] is None
    status = project.inspect("status", "j", "--json").json()
    assert status["cost"]["usd"] == pytest.approx(0.25)


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            {"codex": "do it", "max_turns": 3},
            "max_turns is an option of claude: steps, not of codex:",
        ),
        (
            {"codex": "do it", "allowed_tools": ["Read"]},
            "allowed_tools is an option of claude: steps, not of codex:",
        ),
        (
            {"shell": "true", "model": "opus"},
            "model is an option of claude: and codex: steps, not of shell:",
        ),
        (
            {"shell": "true", "args": ["--x"]},
            "args is an option of claude: and codex: steps, not of shell:",
        ),
        (
            {"write_file": {"path": "f", "content": "c"}, "continue_prompt": "go on"},
            "continue_prompt is an option of claude: and codex: steps, not of write_file:",
        ),
    ],
    ids=["codex-max_turns", "codex-allowed_tools", "shell-model", "shell-args", "file-continue"],
)
def test_an_agent_option_on_the_wrong_kind_of_step_is_invalid(
    project: Project, step: dict[str, Any], message: str
) -> None:
    project.workflow(mapreduce([step]), items=[1])
    done = run_main("validate", str(project.workflow_path))
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


# -- where the cost shows ----------------------------------------------------------------------


def test_cost_adds_up_in_status_items_jobs_and_the_dlq(project: Project, claude_log: Path) -> None:
    # Given three items whose agents cost $0.01, $0.02 and $0.04; item c then fails
    costs = {"a": 0.01, "b": 0.02, "c": 0.04}
    spec = mapreduce(
        [
            {"claude": "Fix ${item.name} [fake:cost=${item.cost}]"},
            "test ${item.name} != c",
        ],
        id="${item.name}",
        retry={"max_attempts": 1},
    )

    done = run(project, spec, [{"name": n, "cost": c} for n, c in costs.items()])

    # Then the job's cost is the sum of the fake's costs, its tokens those of the ledger
    assert done.returncode == 1, done.stderr
    assert len(log_lines(claude_log, ended=True)) == 3
    ledger = agent_runs(project)
    status = project.inspect("status", "j", "--json").json()
    cost = status["cost"]
    assert cost["usd"] == pytest.approx(sum(costs.values()))
    assert (cost["agent_runs"], cost["sessions"], cost["turns"]) == (3, 3, 6)
    for key, column in [
        ("input_tokens", "input_tokens"),
        ("output_tokens", "output_tokens"),
        ("cache_read_tokens", "cache_read_tokens"),
        ("cache_creation_tokens", "cache_creation_tokens"),
    ]:
        assert cost[key] == sum(r[column] for r in ledger)
        assert cost[key] > 0

    # And per item in status --items, the job's in jobs, the failed item's in the DLQ
    items = project.inspect("status", "j", "--items", "--json").json()["items"]
    assert {i["item_id"]: i["cost"]["usd"] for i in items} == pytest.approx(costs)
    assert all(i["cost"]["agent_runs"] == 1 for i in items)
    [job] = project.inspect("jobs", "--json").json()
    assert job["cost"] == cost
    entries = dlq_entries(project)
    assert list(entries) == ["c"]
    assert entries["c"]["cost"]["usd"] == pytest.approx(0.04)
    assert entries["c"]["cost"]["input_tokens"] == next(
        r["input_tokens"] for r in ledger if r["item_id"] == "c"
    )

    # And the text forms say it: status's cost line, dlq show's, the end of run
    text = project.inspect("status", "j").stdout
    [line] = [line for line in text.splitlines() if line.startswith("cost ")]
    assert line.startswith("cost       $0.07, ")
    assert ", 6 turns, 3 agent runs in 3 sessions" in line
    shown = project.inspect("dlq", "show", "j", "c").stdout
    assert "  cost: $0.0400 over 1 agent run(s)" in shown
    assert "  agents: $0.07, " in done.stderr
