"""What every benchmark shares: the sizes (full or quick), the run count, the workspaces.

Synthetic jobs are built once per invocation (``benchmarks/synth.py``) and copied for each
run, because a resume changes its job.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import fresh_dir, log, write_items, write_workflow


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark is; the targets are stated for the full sizes."""

    b1_items: int = 2_000
    b3_items: int = 100_000
    b3_succeeded: int = 50_000
    b3_dlq: int = 1_000
    b3_jobs: int = 1_000
    b4_items: int = 1_000_000
    b4_run_items: int = 50_000  # items run before the SIGINT in the memory run
    b5_items: int = 100_000  # the checkpointed job
    b5_run_items: int = 20_000  # items run while checkpoints are written


FULL = Sizes()
QUICK = Sizes(
    b1_items=500,
    b3_items=20_000,
    b3_succeeded=10_000,
    b3_dlq=200,
    b3_jobs=200,
    b4_items=100_000,
    b4_run_items=2_000,
    b5_items=20_000,
    b5_run_items=3_000,
)


def build_synthetic(workflow: Path, state: Path, job_id: str, counts: tuple[int, int, int]) -> None:
    """synth.py in its own process, so that this one stays small (its memory is not ours)."""
    synth = Path(__file__).with_name("synth.py")
    argv = [sys.executable, str(synth), str(workflow), str(state), job_id, *map(str, counts)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"synth.py failed: {done.stderr.strip()[-2000:]}")


@dataclass
class Context:
    """The options of this invocation and the synthetic jobs built so far."""

    sizes: Sizes
    runs: int
    quick: bool
    work: Path
    _synthetic: dict[tuple[str, int, int, int, str, int], Path] = field(default_factory=dict)

    def workspace(self, name: str) -> Path:
        """A fresh folder for one benchmark under ``benchmarks/.work``."""
        return fresh_dir(self.work / name)

    def synthetic(
        self, job_id: str, counts: tuple[int, int, int], shell: str, max_parallel: int
    ) -> Path:
        """A state directory holding job ``job_id`` built by synth.py; built once, then reused.

        ``counts`` is (items, succeeded, in the DLQ). The job's workflow (one ``shell`` step)
        lives beside it, since a resume reads it again.
        """
        key = (job_id, *counts, shell, max_parallel)
        if key not in self._synthetic:
            total, succeeded, dlq = counts
            folder = fresh_dir(self.work / "synthetic" / f"{job_id}-{len(self._synthetic)}")
            write_items(folder / "items.json", 1)
            workflow = write_workflow(
                folder / "workflow.yml",
                job_id,
                shell,
                max_parallel=max_parallel,
                items="items.json",
            )
            log(f"synthesising {job_id}: {total:,} items, {succeeded:,} succeeded, {dlq:,} in DLQ")
            started = time.perf_counter()
            build_synthetic(workflow, folder / "state", job_id, counts)
            log(f"  built in {time.perf_counter() - started:.1f} s")
            self._synthetic[key] = folder / "state"
        return self._synthetic[key]

    def cleanup(self) -> None:
        """Remove the synthetic jobs (some weigh hundreds of MB)."""
        shutil.rmtree(self.work / "synthetic", ignore_errors=True)
        self._synthetic.clear()
