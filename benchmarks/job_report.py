"""B7 the job report: its size, the time ``mapwise report`` takes, and Chromium's draw time.

(``benchmarks/report.py`` is the writer of docs/benchmarks.md, hence this file's name.)

The job is synthetic, built once per invocation by this file run as a script in its own
process (as ``synth.py`` is for B3), and realistic in what the report draws:

- N items (file paths as ids), a workflow of two template steps (a shell step and a
  ``claude:`` step), ``max_parallel`` 4, all on one host;
- one attempt per item on 4 slots, back to back (a median of 7 ms each, one in a thousand
  of 0.5 to 3 s, about 2 ms between two on a slot), so the job spans about six minutes of
  wall time and nearly every attempt is thinner than a pixel of the timeline;
- two runs: run 1 stopped by SIGINT about 40 % of the way (150 s; 30 s with ``--quick``:
  the attempts then running are ``interrupted`` and run again first in run 2), a gap of
  20 s, run 2 to the end;
- failures: about 2 % of items fail step 1 once (exit 1) and 0.5 % step 2 (an agent
  error), each retried after a 1 s backoff (``max_attempts`` 2); 15 % of the retries fail
  again, into the DLQ; one item in 9,973 times out (5 s) twice, into the DLQ;
- a ``steps`` row per step run (step 2 only when step 1 succeeded) and an ``agent_runs``
  row per ``claude:`` step with its session, cost and tokens (none for one interrupted or
  timed out), so the cost section is drawn.

Each run then times ``mapwise report JOB -o FILE`` as a process (its wall time, Python's
start-up included), weighs the file, and opens it in a fresh headless Chromium (Debian's
``/usr/bin/chromium`` through ``/usr/bin/chromedriver`` and selenium). The draw time is
``loadEventEnd`` of the navigation entry (navigation start to the end of the load event:
the whole file read and parsed) plus, measured in the page right after, a forced layout
(``document.body.offsetHeight`` and the timeline's bounding box) and the wait for the
next frame to be painted (two ``requestAnimationFrame`` callbacks): what a reader waits
for, from opening the file to seeing it drawn, without the WebDriver round trip between
the load and the script. Each run also checks that the page logged no console error and
that its timeline has as many bars as ``mapwise report`` said it drew.
"""

from __future__ import annotations

import heapq
import json
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from context import Context
from harness import Launched, bench_env, log, mapwise_argv, run_timed
from results import Row, Section, at_most

SLOTS = 4
ITEMS = 100_000
QUICK_ITEMS = 20_000
SIZE_TARGET_KB = 10_000  # 10 MB (10^7 bytes)
WRITE_TARGET = 5.0  # seconds
DRAW_TARGET = 3.0  # seconds
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
JOB_ID = "report-big"

WORKFLOW = """\
name: lint-fix
map:
  input: items.json
  id: "${item.file}"
  max_parallel: 4
  timeout: 600
  retry: { max_attempts: 2, initial_delay: 1 }
  agent_template:
    - shell: "ruff check --fix '${item.file}'"
    - claude: "Fix the remaining findings in ${item.file}; say in one line what you changed"
      timeout: 5
"""
SHELL_LABEL = "shell: ruff check --fix '${item.file}'"
CLAUDE_LABEL = (
    "claude: Fix the remaining findings in ${item.file}; say in one line what you changed"
)


# -- the synthetic job -------------------------------------------------------------------


@dataclass
class Synth:
    """Rows of the job's tables, made by simulating 4 slots taking items in order."""

    total: int
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
    steps: list[tuple[Any, ...]] = field(default_factory=list)
    agents: list[tuple[Any, ...]] = field(default_factory=list)
    items: dict[int, list[Any]] = field(default_factory=dict)  # idx -> status, n, secs, end, err

    def plan(self, idx: int, attempt_no: int) -> tuple[float, str | None]:
        """An attempt's duration and how it fails (None: it succeeds)."""
        rng = random.Random(idx * 7 + attempt_no)
        if idx % 9973 == 17:
            return 5.0 + rng.uniform(0.05, 0.3), "timeout"  # both attempts time out
        duration = rng.lognormvariate(-5.0, 0.45)  # median 7 ms
        if rng.random() < 0.001:
            duration = rng.uniform(0.5, 3.0)  # a slow one
        if attempt_no == 1 or rng.random() < 0.15:
            first = random.Random(idx).random()
            if first < 0.02:
                return duration * 0.4, "exit_code"
            if first < 0.025:
                return duration, "agent_error"
        return duration, None

    def record(
        self,
        idx: int,
        attempt_no: int,
        run_no: int,
        slot: int,
        start: float,
        end: float,
        failure: str | None,
    ) -> None:
        attempt_id = len(self.attempts) + 1
        name = item_file(idx)
        duration = end - start
        outcome = {None: "succeeded", "interrupted": "interrupted"}.get(failure, "failed")
        tail = exit_code = signal = None
        if failure == "exit_code":
            tail, exit_code = f"{name}:12:1: E999 SyntaxError: unexpected indent", 1
        elif failure == "agent_error":
            tail, exit_code = "error_during_execution: Execution error", 1
        elif failure in ("timeout", "interrupted"):
            signal = 15
        log = (
            None
            if failure in ("timeout", "interrupted")
            else f"logs/items/{idx}/attempt-{attempt_no}.log"
        )
        session = f"{idx:08x}-{attempt_no:04x}-4000-8000-{attempt_id:012x}"
        self.attempts.append(
            (
                attempt_id,
                idx,
                attempt_no,
                run_no,
                slot,
                "vm",
                start,
                end,
                duration,
                outcome,
                failure,
                exit_code,
                signal,
                tail,
                log,
                json.dumps({"1": session}),
            )
        )
        step1_fails = failure == "exit_code"
        split = end if step1_fails else start + duration * 0.3
        self.steps.append(
            (
                attempt_id,
                "map",
                run_no,
                0,
                SHELL_LABEL,
                start,
                split,
                split - start,
                1 if step1_fails else 0,
                None,
                0,
                "exit_code" if step1_fails else None,
                tail if step1_fails else None,
            )
        )
        if not step1_fails:
            self.steps.append(
                (
                    attempt_id,
                    "map",
                    run_no,
                    1,
                    CLAUDE_LABEL,
                    split,
                    end,
                    end - split,
                    None if failure in ("timeout", "interrupted") else (1 if failure else 0),
                    signal,
                    int(failure == "timeout"),
                    failure,
                    tail if failure else None,
                )
            )
            read = failure in (None, "agent_error")
            cost = round(self.rng.lognormvariate(-5.3, 0.6), 4) if read else None  # ~$0.005
            tokens = int((cost or 0) * 1_000_000)
            self.agents.append(
                (
                    attempt_id,
                    idx,
                    "map",
                    run_no,
                    1,
                    0,
                    "claude",
                    session,
                    0,
                    int(read),
                    int(failure == "agent_error"),
                    ("error_during_execution" if failure else "success") if read else None,
                    cost,
                    tokens // 60,
                    tokens // 30,
                    tokens,
                    tokens // 25,
                    2 if read else 0,
                    "claude-sonnet-4-5",
                    (end - split) * 800 if read else None,
                    split,
                    end,
                )
            )
        entry = self.items.setdefault(idx, ["pending", 0, 0.0, None, None])
        entry[2] += duration
        if failure != "interrupted":
            entry[1] += 1
        if failure is None:
            entry[0], entry[3], entry[4] = "succeeded", end, None
        elif failure != "interrupted" and entry[1] >= 2:  # max_attempts 2
            entry[0], entry[3] = "dlq", end
            entry[4] = (failure, exit_code, last_error(failure, tail))

    def simulate(self, t0: float) -> tuple[float, float, float, float]:
        """Run 1 from t0 until SIGINT stops it, run 2 after a gap; (t0, end of run 1,
        start of run 2, end of run 2)."""
        fresh = iter(range(self.total))
        retries: list[tuple[float, int, int]] = []  # (retry at, idx, attempt_no)
        resumed: list[tuple[int, int]] = []  # interrupted: (idx, next attempt_no)
        stop = t0 + 150.0 * self.total / ITEMS  # about 40 % of the way
        run1_end = self.run(1, t0, stop, fresh, retries, resumed)
        run2_start = run1_end + 20.0
        run2_end = self.run(2, run2_start, float("inf"), fresh, retries, resumed)
        return t0, run1_end, run2_start, run2_end

    def run(
        self,
        run_no: int,
        start: float,
        stop: float,
        fresh: Iterator[int],
        retries: list[tuple[float, int, int]],
        resumed: list[tuple[int, int]],
    ) -> float:
        """One run: each slot takes the next item (interrupted ones first, then retries
        whose backoff is over, then fresh ones) until none is left or ``stop``; its end."""
        free = [(start + 0.08 + 0.001 * s, s) for s in range(SLOTS)]
        heapq.heapify(free)
        last = start
        carried, resumed[:] = list(resumed), []
        while free:
            now, slot = heapq.heappop(free)
            if now >= stop:
                continue  # stopped between two attempts
            if carried:
                idx, attempt_no = carried.pop(0)
            elif retries and retries[0][0] <= now:
                _, idx, attempt_no = heapq.heappop(retries)
            else:
                idx, attempt_no = next(fresh, -1), 1
                if idx < 0:
                    if not retries:
                        last = max(last, now)
                        continue  # nothing left for this slot
                    at, idx, attempt_no = heapq.heappop(retries)
                    now = max(now, at)
            duration, failure = self.plan(idx, attempt_no)
            end = now + duration
            if end > stop:  # SIGINT: the attempt is ended, the slot stops
                end = stop + self.rng.uniform(0.05, 0.35)
                self.record(idx, attempt_no, run_no, slot, now, end, "interrupted")
                resumed.append((idx, attempt_no + 1))
                last = max(last, end)
                continue
            self.record(idx, attempt_no, run_no, slot, now, end, failure)
            if failure is not None and self.items[idx][0] != "dlq":
                heapq.heappush(retries, (end + 1.0, idx, attempt_no + 1))
            gap = 0.001 + self.rng.expovariate(1 / 0.001)  # the runner's hand-off
            heapq.heappush(free, (end + gap, slot))
            last = max(last, end)
        return last + (0.15 if stop < float("inf") else 0.3)


def item_file(idx: int) -> str:
    return f"src/pkg{idx // 1000:03d}/module_{idx % 1000:03d}.py"


def last_error(kind: str, tail: str | None) -> str:
    if kind == "exit_code":
        return f"step 1 exited 1: {tail}"
    if kind == "timeout":
        return "step 2 timed out"
    return f"step 2 agent error: {tail}"


def synthesize(folder: Path, state_dir: Path, job_id: str, total: int) -> dict[str, Any]:
    """The job's database, as a run and a resume would have left it."""
    from mapwise.store import db
    from mapwise.store.jobstore import JobStore
    from mapwise.store.paths import job_paths
    from mapwise.workflow.loader import load_workflow

    (folder / "items.json").write_text("[]\n")
    workflow = folder / "workflow.yml"
    workflow.write_text(WORKFLOW)
    loaded = load_workflow(workflow)
    t0 = time.time() - 3600
    synth = Synth(total)
    start, run1_end, run2_start, end = synth.simulate(t0)
    paths = job_paths(state_dir, job_id)
    paths.root.parent.mkdir(parents=True, exist_ok=True)
    store = JobStore.create(
        paths,
        workflow_name=loaded.workflow.name,
        workflow_path=str(loaded.path),
        workflow_source=loaded.source,
        workflow_sha256=loaded.sha256,
        options={"max_parallel": SLOTS, "executor": "local", "scheduler": None},
        now=start,
    )
    store.freeze_items(
        ((item_file(i), {"file": item_file(i), "n": i}) for i in range(total)), input_sha256=None
    )
    conn = store.conn
    with db.transaction(conn):
        conn.executemany(
            "INSERT INTO runs (run_no, started_at, ended_at, outcome, pid, host, reason)"
            " VALUES (?, ?, ?, ?, ?, 'vm', ?)",
            [
                (1, start, run1_end, "interrupted", 4101, "stopped by SIGINT"),
                (2, run2_start, end, "completed", 4377, None),
            ],
        )
        conn.executemany(
            "INSERT INTO attempts (id, item_idx, attempt_no, run_no, slot, host, started_at,"
            " ended_at, duration, outcome, error_kind, exit_code, signal, stderr_tail,"
            " log_path, sessions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            synth.attempts,
        )
        conn.executemany(
            "INSERT INTO steps (attempt_id, phase, run_no, step_index, label, started_at,"
            " ended_at, duration, exit_code, signal, timed_out, error_kind, stderr_tail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            synth.steps,
        )
        conn.executemany(
            "INSERT INTO agent_runs (attempt_id, item_idx, phase, run_no, step_index,"
            " on_failure, agent, session_id, continued, result_read, is_error, subtype,"
            " cost_usd, input_tokens, output_tokens, cache_read_tokens,"
            " cache_creation_tokens, turns, model, api_ms, started_at, ended_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            synth.agents,
        )
        conn.executemany(
            "UPDATE items SET status = ?, attempts = ?, duration = ?, finished_at = ?,"
            " error_kind = ?, exit_code = ?, last_error = ?, result = ? WHERE idx = ?",
            [
                (
                    status,
                    n,
                    secs,
                    done,
                    *(err or (None, None, None)),
                    '{"captures": {}}' if status == "succeeded" else None,
                    idx,
                )
                for idx, (status, n, secs, done, err) in synth.items.items()
            ],
        )
        conn.execute(
            "UPDATE job SET status = 'completed', phase = 'done', updated_at = ? WHERE id = 1",
            (end,),
        )
    store.close()
    outcomes: dict[str, int] = {}
    for row in synth.attempts:
        key = row[10] if row[10] in ("timeout", "interrupted") else row[9]
        outcomes[key] = outcomes.get(key, 0) + 1
    statuses: dict[str, int] = {}
    for entry in synth.items.values():
        statuses[entry[0]] = statuses.get(entry[0], 0) + 1
    return {
        "job_id": job_id,
        "attempts": len(synth.attempts),
        "steps": len(synth.steps),
        "agent_runs": len(synth.agents),
        "outcomes": outcomes,
        "items": statuses,
        "wall": end - start,
        "cost": round(sum(row[12] or 0 for row in synth.agents), 2),
    }


# -- the benchmark -----------------------------------------------------------------------


@dataclass
class Figures:
    """Per run: the file's size (kB), the write's wall time, the browser's times (s)."""

    size: list[float] = field(default_factory=list)
    write: list[float] = field(default_factory=list)
    draw: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)
    layout_frame: list[float] = field(default_factory=list)
    bars: int = 0
    attempts: int = 0


def build_job(folder: Path, total: int) -> tuple[Path, dict[str, Any]]:
    """This file as a script in its own process (its memory is not ours); the state dir."""
    state = folder / "state"
    argv = [sys.executable, __file__, str(folder), str(state), JOB_ID, str(total)]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the B7 synthesis failed: {done.stderr.strip()[-2000:]}")
    made: dict[str, Any] = json.loads(done.stdout)
    log(
        f"  built in {time.perf_counter() - started:.1f} s: {made['attempts']:,} attempts "
        f"({counts(made['outcomes'])}), items ({counts(made['items'])}), "
        f"{made['agent_runs']:,} agent runs (${made['cost']:,}), {made['wall'] / 60:.1f} min"
    )
    return state, made


def counts(by_kind: dict[str, int]) -> str:
    """``99,616 succeeded, 2,845 failed``: most first."""
    ranked = sorted(by_kind.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{n:,} {kind.replace('timeout', 'timed out')}" for kind, n in ranked)


def browser() -> Any:
    """A fresh headless Chromium, driven by Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--disable-dev-shm-usage",
        "--disable-extensions",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


FRAME_SCRIPT = """
const done = arguments[arguments.length - 1];
const t0 = performance.now();
void document.body.offsetHeight;
const bars = document.getElementById('bars');
if (bars) bars.getBoundingClientRect();
const t1 = performance.now();
requestAnimationFrame(() => requestAnimationFrame(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  done({load: nav.loadEventEnd, layout: t1 - t0, frame: performance.now() - t1,
        bars: document.querySelectorAll('#bars rect.bar').length,
        counted: Array.from(document.querySelectorAll('#bars rect.bar'))
          .reduce((n, r) => n + Number(r.dataset.count), 0)});
}));
"""


def draw(page: Path) -> dict[str, Any]:
    """Open the report in a fresh browser: its times (ms) and what its timeline holds."""
    driver = browser()
    try:
        driver.set_script_timeout(120)
        driver.get(page.resolve().as_uri())
        seen: dict[str, Any] = driver.execute_async_script(FRAME_SCRIPT)
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    finally:
        driver.quit()
    if errors:
        raise RuntimeError(f"the report logged console errors: {errors[:3]}")
    return seen


def measure_once(state: Path, folder: Path, run: int, into: Figures) -> None:
    page = folder / f"report-{run}.html"
    argv = mapwise_argv("report", JOB_ID, "-o", str(page), "--state-dir", str(state))
    done = run_timed(argv, folder / "report.out")
    said = done.output.read_text()
    if done.code != 0:
        raise RuntimeError(f"mapwise report exited {done.code}: {said[-2000:]}")
    found = re.search(r"([\d,]+) attempts in ([\d,]+) timeline bars", said)
    if found is None:
        raise RuntimeError(f"mapwise report did not say how many bars it drew: {said}")
    attempts, bars = (int(n.replace(",", "")) for n in found.groups())
    seen = draw(page)
    if seen["bars"] != bars or seen["counted"] != attempts:
        raise RuntimeError(
            f"the page shows {seen['bars']} bars for {seen['counted']} attempts; "
            f"mapwise report said {bars} for {attempts}"
        )
    into.size.append(round(page.stat().st_size / 1000))
    into.write.append(done.wall)
    into.load.append(seen["load"] / 1000)
    into.layout_frame.append((seen["layout"] + seen["frame"]) / 1000)
    into.draw.append((seen["load"] + seen["layout"] + seen["frame"]) / 1000)
    into.bars, into.attempts = bars, attempts
    log(
        f"  run {run + 1}: {into.size[-1]:,} kB written in {done.wall:.2f} s; drawn in "
        f"{into.draw[-1]:.3f} s (load {seen['load']:.0f} ms, layout {seen['layout']:.0f} ms, "
        f"frame {seen['frame']:.0f} ms); {bars:,} bars for {attempts:,} attempts"
    )
    if run:
        page.unlink()  # the first one is kept to look at


def peak_memory(state: Path, folder: Path) -> float | None:
    """The report process's peak RSS (VmHWM), in one more run (polling would slow the timed
    ones by up to its period)."""
    argv = mapwise_argv("report", JOB_ID, "-o", str(folder / "mem.html"), "--state-dir", str(state))
    done = Launched(argv, folder / "mem.out", env=bench_env()).finish(600, watch_memory=True)
    return done.peak_mb


def job_report(ctx: Context) -> Section:
    """B7: size, write time and draw time of the report of a job of 100,000 items."""
    total = QUICK_ITEMS if ctx.quick else ITEMS
    folder = ctx.workspace("b7")
    log(f"B7: the report of a synthetic {total:,}-item job, {ctx.runs} run(s)")
    state, made = build_job(folder, total)
    figures = Figures()
    try:
        for run in range(ctx.runs):
            measure_once(state, folder, run, figures)
        peak = peak_memory(state, folder)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    job = f"{total:,} items, {figures.attempts:,} attempts, 2 runs"
    rows = [
        Row(
            "B7",
            f"report size ({job}; kB = 1,000 bytes)",
            tuple(figures.size),
            "kB",
            at_most(SIZE_TARGET_KB),
        ),
        Row(
            "B7",
            "mapwise report: launch to exit (file written)",
            tuple(figures.write),
            "s",
            at_most(WRITE_TARGET),
        ),
        Row(
            "B7",
            "headless Chromium: navigation start to first frame after load",
            tuple(figures.draw),
            "s",
            at_most(DRAW_TARGET),
            "loadEventEnd + forced layout + next frame",
        ),
        Row("B7", "... of which navigation start to loadEventEnd", tuple(figures.load), "s"),
        Row("B7", "... of which forced layout and next frame", tuple(figures.layout_frame), "s"),
        Row(
            "B7",
            "timeline bars (attempts gathered where thinner than a pixel)",
            (float(figures.bars),),
            "count",
        ),
    ]
    if peak is not None:
        rows.append(Row("B7", "mapwise report: peak RSS (one more run)", (peak,), "MB"))
    notes = [
        f"B7's job is synthetic ({made['attempts']:,} attempts over "
        f"{made['wall'] / 60:.1f} min on 4 slots: {counts(made['outcomes'])}; items: "
        f"{counts(made['items'])}; "
        f"{made['agent_runs']:,} agent runs costing ${made['cost']:,}); each run times `mapwise "
        "report` as a process and opens its file in a fresh headless Chromium (selenium, "
        "/usr/bin/chromedriver); the draw time is loadEventEnd of the navigation entry plus a "
        "forced layout and two requestAnimationFrame callbacks, measured in the page"
    ]
    return Section(rows, notes)


if __name__ == "__main__":
    target, state_dir, job, count = sys.argv[1:5]
    print(json.dumps(synthesize(Path(target), Path(state_dir), job, int(count))))
