"""A job to damage, and what a user does with a damaged job; for the damage suites.

``build_template`` runs a real job (40 items on 4 slots, a setup and a reduce step that
print) in a subprocess and ``kill -9``\\s it halfway, so its folder holds everything a job
writes: a database with a live WAL, checkpoints, logs, the lock and slot
notes. Each case copies it (``Case.copy``) and damages the copy.

``user_flow`` then does what the docs tell a user to do, in-process through the CLI's
entry point: ``verify``; ``resume``; if refused (exit 4, naming ``repair``), ``repair``
then ``resume``. ``check_final`` checks the ending: the right result (reduce prints
``40/40``, every item succeeded), ``verify`` clean, and no item recorded as succeeded
before the damage ran again unless ``repair`` announced it.

Items mark each run in ``<case root>/marks``: the marker path is derived from
``$MAPWISE_ITEM_FILE`` (``STATE/jobs/JOB/work/items/N-A.json``), so that each copy of the
template marks its own file although the job's workflow stays in the template's folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from helpers.jobdb import JobDb
from helpers.project import CliRun, run_main
from helpers.reliability import no_traceback

ITEMS = 40
JOB = f"dmg-{os.getpid()}"
MARK = 'echo "$MAPWISE_ITEM_ID" >> "$(dirname "$MAPWISE_ITEM_FILE")/../../../../../marks"'
SLOW = '[ -e "$SLOW" ] && sleep 0.15'  # only while the template job runs
EVERY_5_ITEMS = {"MAPWISE_CHECKPOINT_ITEMS": "5", "MAPWISE_CHECKPOINT_SECONDS": "60"}
BOUNDARIES_ONLY = {"MAPWISE_CHECKPOINT_ITEMS": "100000", "MAPWISE_CHECKPOINT_SECONDS": "600"}
REPAIRED = re.compile(r"rebuilt the database from checkpoint \d+; (\d+|an unknown number of) items")


@dataclass(frozen=True)
class Template:
    """A job killed halfway, to be copied for each case."""

    root: Path
    succeeded: frozenset[str]  # items its database records as succeeded


def _workflow(slow_flag: Path) -> str:
    return json.dumps(
        {
            "name": "damaged",
            "env": {"SLOW": str(slow_flag)},
            "setup": [{"shell": "echo preparing"}],
            "map": {
                "input": "items.json",
                "max_parallel": 4,
                "agent_template": [{"shell": f"{MARK}; echo item ${{item}}; {SLOW}; true"}],
            },
            "reduce": [{"shell": "echo ${map.successful}/${map.total}"}],
        }
    )


def marks(root: Path) -> list[str]:
    path = root / "marks"
    return path.read_text().split() if path.exists() else []


def succeeded_in(database: Path) -> frozenset[str]:
    return frozenset(JobDb(database).item_ids_with("succeeded"))


def busy_notes(job_dir: Path) -> list[Path]:
    """The job's slot notes that name a group (a cleared one holds only its padding)."""
    return [p for p in (job_dir / "slots").glob("*.json") if p.read_bytes().strip()]


def _kill_halfway(
    process: subprocess.Popen[bytes], root: Path, job_dir: Path, checkpoints: int
) -> None:
    """``kill -9`` once 16 items ran, ``checkpoints`` were written and a slot is busy."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        written = len(list((job_dir / "checkpoints").glob("*.ckpt")))
        busy = busy_notes(job_dir)
        if len(marks(root)) >= 16 and written >= checkpoints and busy:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the template job ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def build_template(
    root: Path, checkpoint_env: Mapping[str, str], *, checkpoints: int = 1
) -> Template:
    """Run the job in a subprocess and ``kill -9`` it about halfway, once it wrote
    ``checkpoints`` checkpoints."""
    root.mkdir(parents=True)
    slow = root / "slow"
    slow.touch()
    (root / "items.json").write_text(json.dumps(list(range(ITEMS))))
    (root / "wf.yml").write_text(_workflow(slow))
    state = root / "state"
    command = ["run", "wf.yml", "--job-id", JOB, "--state-dir", str(state), "-q"]
    process = subprocess.Popen(
        [sys.executable, "-m", "mapwise", *command],
        cwd=root,
        env={**os.environ, **checkpoint_env, "MAPWISE_KILL_GRACE": "0.5"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    job_dir = state / "jobs" / JOB
    _kill_halfway(process, root, job_dir, checkpoints)
    time.sleep(0.3)  # let the commands it left end before the copies are made
    slow.unlink()
    for name in ("state.db", "state.db-wal", "lock"):
        assert (job_dir / name).exists(), name
    assert list((job_dir / "checkpoints").glob("*.ckpt")), "no checkpoint"
    assert list((job_dir / "logs").rglob("*.log")), "no log"
    assert busy_notes(job_dir), "no slot note"
    scratch = root.parent / f"{root.name}-scratch"
    shutil.copytree(job_dir, scratch)  # read a copy: even a read-only open may touch -shm
    succeeded = succeeded_in(scratch / "state.db")
    assert 0 < len(succeeded) < ITEMS
    return Template(root, succeeded)


@dataclass
class Case:
    """One copy of the template, to damage."""

    root: Path
    before: frozenset[str]  # items recorded as succeeded before the damage
    marks_before: int
    description: str = ""

    @classmethod
    def copy(cls, template: Template, root: Path) -> Case:
        shutil.copytree(template.root, root, symlinks=True)
        return cls(root, template.succeeded, len(marks(root)))

    @property
    def state(self) -> str:
        return str(self.root / "state")

    @property
    def job_dir(self) -> Path:
        return self.root / "state" / "jobs" / JOB

    def cli(self, *args: str) -> CliRun:
        """``mapwise ARGS --state-dir STATE`` in-process; never a traceback."""
        done = run_main(*args, "--state-dir", self.state)
        no_traceback(done.stdout, done.stderr)
        return done

    def reran(self) -> set[str]:
        """Items recorded as succeeded before the damage that ran again after it."""
        return set(marks(self.root)[self.marks_before :]) & self.before


@dataclass(frozen=True)
class Flow:
    """What each step of the user's flow answered."""

    verify: CliRun
    resume: CliRun  # the first resume
    repair: CliRun | None  # None: the first resume was not refused
    final: CliRun  # the resume that completed the job

    def allowance(self) -> int | None:
        """Items repair said will run again: 0 if it rebuilt nothing, None if unknown."""
        found = REPAIRED.search(self.repair.stdout) if self.repair else None
        if found is None:
            return 0
        return None if found.group(1) == "an unknown number of" else int(found.group(1))


def user_flow(case: Case) -> Flow:
    """verify; resume; when refused: repair, resume. Each step's answer is checked."""
    verified = case.cli("verify", JOB)
    assert verified.returncode in (0, 1, 4), verified.stdout + verified.stderr
    resumed = case.cli("resume", JOB, "-q")
    final, repaired = resumed, None
    if resumed.returncode == 4:
        assert verified.returncode == 4, f"resume refused what verify passed: {resumed.stderr}"
        assert "mapwise repair" in resumed.stderr, resumed.stderr
        assert len(marks(case.root)) == case.marks_before, "a refused resume ran items"
        repaired = case.cli("repair", JOB)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        final = case.cli("resume", JOB, "-q")
    assert final.returncode == 0, f"{case.description}: {final.stderr}"
    assert final.stdout.split() == [f"{ITEMS}/{ITEMS}"], final.stdout
    return Flow(verified, resumed, repaired, final)


def check_final(case: Case, flow: Flow) -> None:
    """Every item succeeded, every item ran, nothing was lost unannounced, verify clean."""
    rows = JobDb(case.job_dir / "state.db").rows(
        "SELECT status, COUNT(*) AS n FROM items GROUP BY status"
    )
    statuses = {r["status"]: r["n"] for r in rows}
    assert statuses == {"succeeded": ITEMS}, statuses
    assert set(marks(case.root)) == {str(n) for n in range(ITEMS)}
    reran, allowance = case.reran(), flow.allowance()
    if allowance is not None:
        assert len(reran) <= allowance, (
            f"{case.description}: {len(reran)} items recorded as succeeded ran again "
            f"({sorted(reran, key=int)}); repair announced {allowance}"
        )
    verified = case.cli("verify", JOB)
    if verified.returncode != 0:  # e.g. a damaged checkpoint that resume did not need
        assert case.cli("repair", JOB).returncode == 0
        verified = case.cli("verify", JOB)
    assert verified.returncode == 0, verified.stdout
