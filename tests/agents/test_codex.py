"""``codex:`` steps end to end through the fake Codex CLI (examples/agent/fake_codex.py):
``mapwise run`` in a subprocess, the fake's invocation log (``FAKE_CODEX_LOG``), the
job's database. Codex reports tokens and no cost; its session is the thread id it names
in its first event, recorded while it runs, so that a ``kill -9`` mid-step is continued
with ``codex exec resume THREAD`` by ``mapwise resume``.

The fake, like the real CLI, refuses to run outside a git work tree without
``--skip-git-repo-check``; the workflows pass it through ``args`` (or run in a repository).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.jobs import Coordinator, wait_until
from helpers.processes import pid_alive
from helpers.project import FAKE_CLAUDE, CliRun, Project, mapreduce

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX process groups, /proc")

FAKE_CODEX = FAKE_CLAUDE.parent / "fake_codex.py"
SKIP_GIT = ["--skip-git-repo-check"]
THREAD_TOKENS = {"input_tokens": 2400 - 2048, "cache_read_tokens": 2048, "output_tokens": 120}


@pytest.fixture
def codex_log(project: Project, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MAPWISE_CODEX is the fake; its invocation log is returned."""
    monkeypatch.setenv("MAPWISE_CODEX", shlex.join([sys.executable, str(FAKE_CODEX)]))
    path = project.root / "codex-log.jsonl"
    monkeypatch.setenv("FAKE_CODEX_LOG", str(path))
    return path


def log_lines(path: Path, *, ended: bool | None = None) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if ended is None or line["ended"] is ended]


def run(project: Project, spec: dict[str, Any], items: list[Any]) -> CliRun:
    project.workflow(spec, items=items)
    return project.run_cli("--job-id", "j")


def agent_runs(project: Project) -> list[dict[str, Any]]:
    return project.db("j").rows(
        "SELECT r.*, i.item_id FROM agent_runs r JOIN items i ON i.idx = r.item_idx"
        " ORDER BY r.item_idx, r.id"
    )


def test_codex_step_records_tokens_thread_and_capture(project: Project, codex_log: Path) -> None:
    # Given a codex step with a model, its message captured by a later step
    spec = mapreduce(
        [
            {
                "codex": "Fix ${item.name} [fake:result_text=fixed-${item.name}]",
                "model": "gpt-5",
                "args": SKIP_GIT,
                "capture": "said",
            },
            'printf "%s" "${said}" > "said-${item_id}"',
        ],
        id="${item.name}",
    )

    # When it runs
    done = run(project, spec, [{"name": "a"}, {"name": "b"}])

    # Then each run got `exec --json --model M ARGS PROMPT`, and named a thread
    assert done.returncode == 0, done.stderr
    threads: dict[str, str] = {}
    for line in log_lines(codex_log, ended=False):
        name = line["prompt"].split()[1]
        assert line["argv"] == [
            "exec",
            "--json",
            "--model",
            "gpt-5",
            "--skip-git-repo-check",
            f"Fix {name} [fake:result_text=fixed-{name}]",
        ]
        assert (line["mode"], line["cwd"]) == ("new", str(project.root))
        threads[name] = line["thread_id"]
    assert set(threads) == {"a", "b"} and threads["a"] != threads["b"]

    # And the ledger has the thread as session, the tokens (input without the cached
    # ones) and no cost; the attempt recorded the thread too
    ledger = {r["item_id"]: r for r in agent_runs(project)}
    db = project.db("j")
    for name, thread in threads.items():
        row = ledger[name]
        assert (row["agent"], row["session_id"], row["continued"]) == ("codex", thread, 0)
        assert (row["result_read"], row["is_error"], row["subtype"]) == (1, 0, "success")
        assert row["cost_usd"] is None
        assert {k: row[k] for k in THREAD_TOKENS} == THREAD_TOKENS
        assert (row["cache_creation_tokens"], row["turns"], row["model"]) == (0, 1, "gpt-5")
        [attempt] = db.attempts(name)
        assert json.loads(attempt["sessions"]) == {"0": thread}

    # And the job's cost is tokens only, zero dollars
    cost = project.inspect("status", "j", "--json").json()["cost"]
    assert cost["usd"] == 0
    assert (cost["agent_runs"], cost["sessions"], cost["turns"]) == (2, 2, 2)
    assert {k: cost[k] for k in THREAD_TOKENS} == {k: 2 * v for k, v in THREAD_TOKENS.items()}

    # And the agent's last message was captured
    assert project.read("said-a") == "fixed-a"
    assert project.read("said-b") == "fixed-b"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_codex_in_a_git_work_tree_needs_no_flag(project: Project, codex_log: Path) -> None:
    # Given the project is a git repository, and a codex step without extra args
    subprocess.run(["git", "init", "-q", str(project.root)], check=True)
    spec = mapreduce([{"codex": "Look at ${item}"}])

    done = run(project, spec, ["x"])

    # Then the fake ran in it and succeeded
    assert done.returncode == 0, done.stderr
    [end] = log_lines(codex_log, ended=True)
    assert (end["argv"], end["status"], end["exit_code"]) == (
        ["exec", "--json", "Look at x"],
        "completed",
        0,
    )


def test_codex_outside_a_git_work_tree_without_the_flag_fails_with_no_result(
    project: Project, codex_log: Path
) -> None:
    spec = mapreduce([{"codex": "Look at ${item}"}], retry={"max_attempts": 1})
    done = run(project, spec, ["x"])
    assert done.returncode == 1
    [entry] = project.inspect("dlq", "list", "j", "--json").json()
    assert (entry["error_kind"], entry["exit_code"]) == ("exit_code", 1)
    [row] = agent_runs(project)
    assert (row["result_read"], row["session_id"]) == (0, None)


def test_turn_failed_with_exit_0_is_an_agent_error(project: Project, codex_log: Path) -> None:
    # Given a codex run whose turn fails (error + turn.failed) and that exits 0
    spec = mapreduce(
        [
            {"codex": "Fix ${item} [fake:result=failed] [fake:exit=0]", "args": SKIP_GIT},
            "touch after",
        ],
        retry={"max_attempts": 1},
    )

    done = run(project, spec, ["x"])

    # Then the item is in the DLQ with agent_error, the failure's message as its detail
    assert done.returncode == 1, done.stderr
    [end] = log_lines(codex_log, ended=True)
    assert (end["status"], end["exit_code"]) == ("failed", 0)
    [entry] = project.inspect("dlq", "list", "j", "--json").json()
    assert (entry["error_kind"], entry["exit_code"]) == ("agent_error", 0)
    assert entry["last_error"] == (
        "step 1 agent error: We're currently experiencing high demand,"
        " which may cause temporary errors."
    )
    assert not project.path("after").exists()
    [row] = agent_runs(project)
    assert (row["result_read"], row["is_error"], row["subtype"], row["turns"]) == (
        1,
        1,
        "turn.failed",
        1,
    )
    assert row["session_id"] == end["thread_id"]
    assert row["cost_usd"] is None


def test_kill_9_mid_codex_step_then_resume_continues_the_thread(
    project: Project, codex_log: Path
) -> None:
    # Given a template: a shell step that captures, a codex step that works a long
    # time (new sessions only) with a continue prompt, a step that uses its message
    spec = mapreduce(
        [
            {"shell": 'echo once >> first-step; echo "tok-${item}"', "capture": "tok"},
            {
                "codex": "Work on ${tok} [fake:sleep=60]",
                "continue_prompt": "Carry on with ${tok}",
                "args": SKIP_GIT,
                "capture": "said",
            },
            'printf "%s" "${said}" > said',
        ]
    )
    project.workflow(spec, items=["x"])
    args = ["run", str(project.workflow_path), "--state-dir", str(project.state_dir)]
    coordinator = Coordinator(
        [*args, "--job-id", "j", "-q"],
        cwd=project.root,
        env=dict(os.environ),
    )
    codex_pid: int | None = None
    try:
        # When the codex step is sleeping and its thread id is on record
        coordinator.wait_for(
            lambda: bool(log_lines(codex_log, ended=False)),
            what="the codex step to start",
        )
        [start] = log_lines(codex_log, ended=False)
        codex_pid, thread = start["pid"], start["thread_id"]

        def recorded() -> dict[str, str]:
            rows = project.db("j").rows("SELECT sessions FROM attempts")
            return json.loads(rows[0]["sessions"] or "{}") if rows else {}

        wait_until(lambda: recorded() == {"1": thread}, what="the thread id on record")

        # ... the whole `mapwise run` process group is killed with SIGKILL
        os.killpg(coordinator.pid, signal.SIGKILL)
        assert coordinator.wait() == -signal.SIGKILL
        assert log_lines(codex_log, ended=True) == []  # the agent was still working

        # ... and the job is resumed
        resumed = project.cli("resume", "j", "--state-dir", str(project.state_dir))
    finally:
        coordinator.close()
        if codex_pid is not None and pid_alive(codex_pid):
            os.kill(codex_pid, signal.SIGKILL)

    # Then the codex step ran `exec resume THREAD CONTINUE_PROMPT` in the same directory
    assert resumed.returncode == 0, resumed.stderr
    starts = log_lines(codex_log, ended=False)
    assert [s["mode"] for s in starts] == ["new", "resume"]
    again = starts[1]
    assert again["argv"] == [
        "exec",
        "--json",
        "--skip-git-repo-check",
        "resume",
        thread,
        "Carry on with tok-x",
    ]
    assert (again["thread_id"], again["cwd"]) == (thread, start["cwd"])
    assert start["cwd"] == str(project.root)
    assert not pid_alive(codex_pid)  # the orphaned first run was killed by resume

    # And the first step did not run again; its capture came back for the codex step
    assert project.lines("first-step") == ["once"]
    assert project.read("said") == "Carry on with tok-x"

    # And the continued attempt and its ledger row name the same thread
    attempts = project.db("j").attempts("0")
    assert [a["outcome"] for a in attempts] == ["interrupted", "succeeded"]
    assert attempts[1]["resume_from"] == 1
    assert json.loads(attempts[1]["sessions"]) == {"1": thread}
    [row] = agent_runs(project)
    assert (row["session_id"], row["continued"], row["step_index"]) == (thread, 1, 1)
    assert row["attempt_id"] == attempts[1]["id"]
