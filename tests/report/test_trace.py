"""``mapwise report --trace``: the job's attempts as Chrome trace-event JSON, for Perfetto.

A small real job runs through the command line: one item goes to the DLQ after two
failed attempts, one blocks until the job is stopped with SIGINT, and a resume finishes
it. The trace is then checked against the Trace Event Format (the JSON object form:
``{"traceEvents": [...]}``) and against the job's database: one complete event per
attempt and per template step, a process per host, a thread per slot, an instant event
per run.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mapwise
from helpers.jobs import Workspace, block_while, item_command, workspace

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals, POSIX groups")

JOB = "traced"
ITEMS = [{"id": name} for name in ("a", "b", "bad", "slow", "c")]
FAIL_BAD = '[ "$MAPWISE_ITEM_ID" != bad ] || { echo "bad item" >&2; exit 3; }'


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    yield from workspace(tmp_path, monkeypatch)


def statuses(ws: Workspace, job: str) -> dict[str, str]:
    """The items' statuses, or none while the job's database is not there yet."""
    try:
        return ws.db(job).statuses()
    except (AssertionError, sqlite3.Error):
        return {}


def stopped_and_resumed_job(ws: Workspace) -> str:
    """A job of two template steps (the second with an ``on_failure`` handler) whose item
    ``bad`` goes to the DLQ after two attempts and whose item ``slow`` is running when
    SIGINT stops the job; a resume then finishes it. Returns the job id."""
    slow = ws.flag("slow")
    slow.touch()
    block_slow = f'[ "$MAPWISE_ITEM_ID" != slow ] || {{ {block_while("SLOW")}; }}'
    ws.write_workflow(
        [
            ": first step",
            {
                "shell": item_command(f"{FAIL_BAD}; {block_slow}"),
                "on_failure": [{"shell": "echo handled >&2"}],
            },
        ],
        items=ITEMS,
        env={"SLOW": str(slow)},
        max_parallel=2,
        retry={"max_attempts": 2, "initial_delay": 0},
    )
    coordinator = ws.start_run(JOB)
    coordinator.wait_for(
        lambda: (
            statuses(ws, JOB)
            == {
                "a": "succeeded",
                "b": "succeeded",
                "c": "succeeded",
                "bad": "dlq",
                "slow": "running",
            }
        ),
        what="every item done but slow, which runs",
    )
    coordinator.send(signal.SIGINT)
    assert coordinator.wait() == 130, coordinator.stderr
    slow.unlink()
    resumed = ws.resume(JOB)
    assert resumed.returncode == 1, resumed.stderr  # completed, with an item in the DLQ
    return JOB


def report(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    """``mapwise report ARGS --state-dir STATE`` in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "mapwise", "report", *args, "--state-dir", str(ws.state_dir)],
        cwd=ws.root,
        env=ws.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def template_step_rows(ws: Workspace, job: str) -> list[dict[str, Any]]:
    """The steps of the item template that ran (handlers left out), with their attempt."""
    return ws.db(job).rows(
        "SELECT s.*, a.started_at AS a_start, a.ended_at AS a_end FROM steps s"
        " JOIN attempts a ON a.id = s.attempt_id"
        " WHERE s.phase = 'map' AND s.on_failure = 0 ORDER BY s.id"
    )


def test_the_trace_holds_every_attempt_step_slot_host_and_run_of_the_job(
    ws: Workspace,
) -> None:
    # Given a job with an item in the DLQ, stopped by SIGINT and resumed
    job = stopped_and_resumed_job(ws)
    db = ws.db(job)
    attempts = db.attempts()
    runs = db.runs()
    steps = template_step_rows(ws, job)
    assert len(runs) == 2
    assert Counter(a["outcome"] for a in attempts)["interrupted"] == 1
    assert db.item("bad")["attempts"] >= 2
    handlers = db.rows("SELECT * FROM steps WHERE phase = 'map' AND on_failure = 1")
    assert handlers, "the on_failure handler ran"

    # When its report is written with a trace
    done = report(ws, job, "-o", "report.html", "--trace", "trace.json")

    # Then both files are written
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert ws.path("report.html").is_file()
    trace = json.loads(ws.path("trace.json").read_text(encoding="utf-8"))

    # And the trace is a JSON object with a list of events
    assert isinstance(trace, dict)
    events = trace["traceEvents"]
    assert isinstance(events, list) and events
    # And every event has a name, a phase and a process; a thread too, but for a
    # process's name
    for event in events:
        assert isinstance(event["name"], str) and event["name"], event
        assert event["ph"] in {"X", "M", "i"}, event
        assert isinstance(event["pid"], int), event
        if not (event["ph"] == "M" and event["name"] == "process_name"):
            assert isinstance(event["tid"], int), event
    # And complete events have whole microseconds from the job's start
    complete = [e for e in events if e["ph"] == "X"]
    for event in complete:
        assert isinstance(event["ts"], int) and event["ts"] >= 0, event
        assert isinstance(event["dur"], int) and event["dur"] >= 0, event

    # And there is one complete event per attempt, naming its item and attempt
    attempt_events = [e for e in complete if e.get("cat") == "attempt"]
    assert len(attempt_events) == len(attempts)
    assert sorted((e["args"]["item"], e["args"]["attempt"]) for e in attempt_events) == sorted(
        (a["item_id"], a["attempt_no"]) for a in attempts
    )
    outcomes = Counter(e["args"]["outcome"] for e in attempt_events)
    assert outcomes == Counter(a["outcome"] for a in attempts)
    # And one per template step that ran, handlers left out
    step_events = [e for e in complete if e.get("cat") == "step"]
    assert len(step_events) == len(steps)
    assert {e.get("cat") for e in complete} == {"attempt", "step"}

    # And a process per host, named, and a thread per slot, named
    meta = [e for e in events if e["ph"] == "M"]
    processes = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    assert len(processes) == len([e for e in meta if e["name"] == "process_name"])
    assert sorted(processes.values()) == sorted({a["host"] for a in attempts})
    threads = {
        (processes[e["pid"]], e["tid"]): e["args"]["name"]
        for e in meta
        if e["name"] == "thread_name"
    }
    assert len(threads) == len([e for e in meta if e["name"] == "thread_name"])
    assert set(threads) == {(a["host"], a["slot"]) for a in attempts}
    assert all(name == f"slot {slot}" for (_, slot), name in threads.items())
    # And each attempt is on its host's process and its slot's thread
    placed = {
        (e["args"]["item"], e["args"]["attempt"]): (processes[e["pid"]], e["tid"])
        for e in attempt_events
    }
    for a in attempts:
        assert placed[(a["item_id"], a["attempt_no"])] == (a["host"], a["slot"])

    # And each run is a global instant event
    instants = [e for e in events if e["ph"] == "i"]
    assert len(instants) == len(runs)
    assert all(e["s"] == "g" and isinstance(e["ts"], int) and e["ts"] >= 0 for e in instants)
    assert [e["name"] for e in instants] == ["run 1 (start)", "run 2 (resume)"]

    # And each step lies within exactly one attempt on its thread
    for step in step_events:
        end = step["ts"] + step["dur"]
        around = [
            a
            for a in attempt_events
            if (a["pid"], a["tid"]) == (step["pid"], step["tid"])
            and a["ts"] <= step["ts"]
            and end <= a["ts"] + a["dur"]
        ]
        assert len(around) == 1, step


def test_the_trace_of_the_api_counts_what_it_wrote(ws: Workspace) -> None:
    # Given a job with an item in the DLQ, stopped by SIGINT and resumed
    job = stopped_and_resumed_job(ws)

    # When the library writes its report and trace
    written = mapwise.write_report(
        job, ws.path("r.html"), state_dir=ws.state_dir, trace=ws.path("t.json")
    )

    # Then it says where and how many events, as the file holds them
    assert written.trace_path == ws.path("t.json")
    events = json.loads(ws.path("t.json").read_text(encoding="utf-8"))["traceEvents"]
    assert written.trace_events == len(events)
    assert written.attempts == len(ws.db(job).attempts())
    assert written.path == ws.path("r.html")
    assert written.bytes == ws.path("r.html").stat().st_size


def test_no_trace_is_written_unless_asked(ws: Workspace) -> None:
    # Given a finished job of a single item
    ws.write_workflow([": only step"], items=[{"id": "one"}])
    first = ws.start_run("plain")
    assert ws.finish(first).returncode == 0

    # When its report is written without --trace
    done = report(ws, "plain", "-o", "r.html")

    # Then no trace file is written and the library says so
    assert done.returncode == 0, done.stderr
    assert {p.name for p in ws.root.glob("*.json")} == {"items.json"}
    written = mapwise.write_report("plain", ws.path("r2.html"), state_dir=ws.state_dir)
    assert (written.trace_path, written.trace_events) == (None, 0)


def test_a_trace_into_a_missing_folder_is_refused_clearly(ws: Workspace) -> None:
    # Given a finished job of a single item
    ws.write_workflow([": only step"], items=[{"id": "one"}])
    assert ws.finish(ws.start_run("plain")).returncode == 0

    # When its trace is asked for in a folder that does not exist
    done = report(ws, "plain", "-o", "r.html", "--trace", "missing/t.json")

    # Then the command says it cannot write there, as for -o, without a traceback
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert "cannot write missing/t.json" in done.stderr
