"""Running the tools under test: timed subprocesses, peak memory, timestamp files, workspaces.

Every figure of the benchmarks comes from a real process started here, timed from just
before its launch. Peak memory is ``VmHWM`` of ``/proc/<pid>/status`` (the high-water mark
of the process's own memory), polled until the process exits. Not ``ru_maxrss`` from
``wait4``: Linux carries the parent's high-water mark into a child through ``exec``, so a
child of a big benchmark process would report the parent's peak. Nothing here knows what
is being measured.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".work"
STAMPS_VAR = "BENCH_STAMPS"
# a shell step that records when the first item of a run started (a builtin test for the rest)
FIRST_STAMP = f'[ -s "${STAMPS_VAR}" ] || date +%s.%N >> "${STAMPS_VAR}"'
# a shell step that records when every item started
EVERY_STAMP = f'date +%s.%N >> "${STAMPS_VAR}"'


def log(message: str) -> None:
    """Progress on stderr, so that stdout stays the table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def mapwise_argv(*args: str) -> list[str]:
    """The ``mapwise`` console script of the running interpreter's environment."""
    script = Path(sys.executable).with_name("mapwise")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "mapwise"]
    return [*base, *args]


def fresh_dir(path: Path) -> Path:
    """An empty folder at ``path`` (whatever was there is removed)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def write_items(path: Path, count: int, *, objects: bool = True) -> Path:
    """A JSON array of ``count`` items: ``{"n": i}`` objects, or plain integers."""
    with path.open("w") as handle:
        handle.write("[")
        for start in range(0, count, 100_000):
            chunk = range(start, min(start + 100_000, count))
            parts = (f'{{"n": {i}}}' if objects else str(i) for i in chunk)
            handle.write(("," if start else "") + ",".join(parts))
        handle.write("]\n")
    return path


def write_workflow(path: Path, name: str, shell: str, *, max_parallel: int, items: str) -> Path:
    """A setup-less workflow: ``items`` (a file beside it), one shell step per item."""
    text = (
        f"name: {name}\n"
        "map:\n"
        f"  input: {items}\n"
        f"  max_parallel: {max_parallel}\n"
        "  agent_template:\n"
        f"    - shell: {json.dumps(shell)}\n"
    )
    path.write_text(text)
    return path


def bench_env(stamps: Path | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a measured command: ours, the stamps file, the given knobs."""
    env = dict(os.environ)
    env.pop("MAPWISE_STATE_DIR", None)
    if stamps is not None:
        env[STAMPS_VAR] = str(stamps)
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Finished:
    """How a measured process ended."""

    code: int
    wall: float  # seconds from just before launch to exit
    peak_mb: float | None  # the process's VmHWM (peak resident memory), when it was watched
    output: Path  # its stdout and stderr, interleaved
    after_interrupt: float | None = None  # seconds from our SIGINT to its exit


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


class Launched:
    """A process started now, whose start, first timestamp, stop and peak memory we observe."""

    def __init__(
        self,
        argv: Sequence[str],
        output: Path,
        *,
        env: Mapping[str, str],
        cwd: Path | None = None,
        stdin: Path | None = None,
    ) -> None:
        self.output = output
        handle = output.open("wb")
        source = stdin.open("rb") if stdin is not None else None
        self.started_wall = time.time()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            list(argv),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=source if source is not None else subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
        )
        handle.close()
        if source is not None:
            source.close()
        self.interrupted_at: float | None = None
        self.first_dispatch: float | None = None  # seconds from launch, when a caller saw it

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        """Whether the process has ended, without reaping it (``finish`` does that)."""
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, self.pid, flags) is not None

    def vm_hwm_mb(self) -> float | None:
        """The process's peak resident memory so far (``VmHWM``), while it is alive."""
        return self._status_mb("VmHWM:")

    def vm_rss_mb(self) -> float | None:
        """The process's resident memory now (``VmRSS``), while it is alive."""
        return self._status_mb("VmRSS:")

    def _status_mb(self, key: str) -> float | None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def interrupt(self) -> None:
        """SIGINT, as a Ctrl-C would send (to the coordinator only)."""
        self.interrupted_at = time.perf_counter()
        self._signal(signal.SIGINT)

    def finish(self, timeout: float = 600.0, *, watch_memory: bool = False) -> Finished:
        """Wait for the exit (SIGKILL after ``timeout``) and reap the process.

        ``watch_memory`` polls VmHWM every 20 ms until the exit (its last reading is the
        peak, the stop included); without it the wait blocks, so that a short command's
        time is not rounded up to the polling period.
        """
        watchdog = threading.Timer(timeout, self._kill)
        watchdog.start()
        peak = None
        try:
            if watch_memory:
                peak = self._watch_until_exit()
            _, status = os.waitpid(self.pid, 0)
        finally:
            watchdog.cancel()
        ended = time.perf_counter()
        self.proc.returncode = _exit_code(status)
        wall = ended - self.started
        stop = None if self.interrupted_at is None else ended - self.interrupted_at
        return Finished(self.proc.returncode, wall, peak, self.output, stop)

    def _watch_until_exit(self) -> float | None:
        """The last VmHWM read before the process exited (without reaping it)."""
        peak = None
        while not self.exited():
            peak = self.vm_hwm_mb() or peak
            time.sleep(0.02)
        return peak

    def _kill(self) -> None:
        log(f"timeout: killing pid {self.pid}")
        self._signal(signal.SIGKILL)

    def _signal(self, number: int) -> None:
        """Signal the process unless it has ended (``Popen.send_signal`` would reap it)."""
        if not self.exited():
            os.kill(self.pid, number)


def run_timed(
    argv: Sequence[str],
    output: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: Path | None = None,
    timeout: float = 900.0,
) -> Finished:
    """Run a command to its end; its wall time includes process start-up."""
    launched = Launched(argv, output, env=env or bench_env(), cwd=cwd, stdin=stdin)
    return launched.finish(timeout)


def first_stamp(stamps: Path) -> float | None:
    """The first complete timestamp line of ``stamps`` (as ``date +%s.%N`` wrote it)."""
    try:
        text = stamps.read_text()
    except OSError:
        return None
    line, newline, _ = text.partition("\n")
    return float(line) if newline else None


def wait_until(
    condition: Callable[[], bool], launched: Launched, *, timeout: float, every: float
) -> bool:
    """Poll ``condition`` while the process lives; False on its exit or the timeout."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if condition():
            return True
        if launched.exited():
            return condition()
        time.sleep(every)
    return False


def wait_first_stamp(stamps: Path, launched: Launched, timeout: float) -> float | None:
    """The first item's start time, polled every 2 ms (cheap: a ``stat``)."""

    def written() -> bool:
        try:
            return stamps.stat().st_size > 0 and first_stamp(stamps) is not None
        except OSError:
            return False

    if not wait_until(written, launched, timeout=timeout, every=0.002):
        return None
    return first_stamp(stamps)


def read_stamps(stamps: Path) -> list[float]:
    """Every complete timestamp in the file, sorted."""
    values = []
    for line in stamps.read_text().splitlines():
        try:
            values.append(float(line))
        except ValueError:
            continue  # a line cut by a stop
    return sorted(values)


def completed_items(state_dir: Path, job_id: str) -> int:
    """Items succeeded so far, from the job's database (a read-only look while it runs)."""
    database = state_dir / "jobs" / job_id / "state.db"
    if not database.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT COALESCE(SUM(n), 0) FROM item_counts WHERE status = 'succeeded'"
            ).fetchone()
            return int(row[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def item_counts(database: Path) -> dict[str, int]:
    """Items per status, read from the job's database after the run (read-only)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall()
        return {str(status): int(count) for status, count in rows}
    finally:
        conn.close()


def succeeded_attempts(database: Path) -> int:
    """Attempts recorded as succeeded (each item's attempt row, not just its status)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT COUNT(*) FROM attempts WHERE outcome = 'succeeded'").fetchone()
        return int(row[0])
    finally:
        conn.close()


def recorded_run(
    workflow: Path, state_dir: Path, job_id: str, output: Path, extra: Sequence[str] = ()
) -> tuple[float, int]:
    """Seconds for ``mapwise run WORKFLOW --quiet`` in a fresh ``state_dir`` (``extra``
    added to its command line, run in the workflow's folder), and how many items its
    database then shows succeeded; the state is removed after."""
    fresh_dir(state_dir)
    argv = mapwise_argv("run", str(workflow), "--state-dir", str(state_dir))
    argv += ["--job-id", job_id, "--quiet", *extra]
    done = run_timed(argv, output, env=bench_env(), cwd=workflow.parent)
    if done.code != 0:
        raise RuntimeError(f"mapwise run exited {done.code}: see {done.output}")
    database = state_dir / "jobs" / job_id / "state.db"
    recorded = min(item_counts(database).get("succeeded", 0), succeeded_attempts(database))
    shutil.rmtree(state_dir, ignore_errors=True)
    return done.wall, recorded


def copy_job(source_state: Path, target_state: Path, job_id: str) -> Path:
    """A copy of one job folder into a fresh state directory (its own lock, database)."""
    fresh_dir(target_state / "jobs")
    shutil.copytree(source_state / "jobs" / job_id, target_state / "jobs" / job_id)
    return target_state
