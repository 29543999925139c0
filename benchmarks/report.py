"""docs/benchmarks.md: the table, the machine, how to rerun, and the kept hand-written notes.

The file is rewritten by every run, except the part between ``NOTES_BEGIN`` and
``NOTES_END``: what a profile showed for a missed target is written by hand and survives.
"""

from __future__ import annotations

from pathlib import Path

from results import Row, table

NOTES_BEGIN = "<!-- hand-written notes: kept by benchmarks/run.py -->"
NOTES_END = "<!-- end of hand-written notes -->"

METHOD = """\
- Every figure is the median of the runs shown; a command's time runs from just before
  its process is launched to its exit, so Python's start-up is in every mapwise figure
  (B3 shows it alone). Ratios are ratios of the medians.
- **B1**: each round runs xargs, GNU parallel and `mapwise run` one after another over the
  same items (`true`, 4 at a time; xargs execs `true` directly, parallel and mapwise go
  through a shell), after one untimed 50-item warm-up of each. After every mapwise run
  its database must show every item succeeded with a succeeded attempt row.
- **B1 on Dask** (issue 5, no target): in each round, right after the local run, the same
  `mapwise run` with `--executor dask` on a `LocalCluster` of 2 worker processes x 2
  threads on 127.0.0.1, started once for the section and closed at its end, checked the
  same way. "local pool / Dask" is the ratio of the medians; on one machine it shows only
  Dask's per-item overhead, which "extra wall time per item" states in milliseconds.
- **B2**: the same `mapwise run` with `--state-dir` on /dev/shm (tmpfs), in the same rounds.
- **B3**: the big job is built by `benchmarks/synth.py`; each resume runs on a fresh copy;
  "first item started" is the first item's own `date +%s.%N` minus the launch time; the
  resume is then stopped with SIGINT. The 1,000 jobs are copies of one small real job
  (one item in its DLQ, so all are resumable) with their ids rewritten.
- **B4**: a setup-less workflow over a JSON file of `{"n": i}` objects; the run is
  stopped with SIGINT once the job's database shows the given number of items succeeded; peak
  RSS is the coordinator's `VmHWM` (/proc/PID/status), polled every 20 ms until it exits
  (its whole life, the stop included).
- **B5**: `write_checkpoint` timed through the library on a copy of B3's job; the stall
  runs resume a synthetic job whose items each log their start time, with
  `MAPWISE_CHECKPOINT_SECONDS=0.5` (judged: the largest gap between consecutive item
  starts in the whole run), then again with checkpoints off. A gap is "near a checkpoint"
  when it overlaps the window from 50 ms before the checkpoint header's time to 0.5 s
  after the file's last write.
"""


def kept_notes(path: Path) -> str:
    """The hand-written notes section of an existing report, markers included."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    start, end = text.find(NOTES_BEGIN), text.find(NOTES_END)
    if start < 0 or end < start:
        return ""
    return text[start : end + len(NOTES_END)]


def render(
    rows: list[Row],
    machine: list[tuple[str, str]],
    notes: list[str],
    command: str,
    heading: str,
    kept: str,
) -> str:
    """The whole Markdown file."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `benchmarks/run.py` (issue 4, section Performance); do not edit by hand",
        "except between the hand-written notes markers.",
        "",
        f"{heading}",
        "",
        *table(rows),
        "",
    ]
    if notes:
        lines += ["Notes from this run:", "", *(f"- {note}" for note in notes), ""]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in machine]
    lines += [
        "",
        "## How to rerun",
        "",
        "```sh",
        ". .venv/bin/activate",
        "python benchmarks/run.py                 # everything, 5 runs each (about half an hour)",
        "python benchmarks/run.py --quick         # smaller sizes, 1 run: a few minutes",
        "python benchmarks/run.py --only B1,B3 --runs 5",
        "```",
        "",
        f"This file came from: `{command}`. `--quick` writes to",
        "`benchmarks/.work/benchmarks-quick.md` unless `--output` is given.",
        "",
        "## Method",
        "",
        METHOD,
    ]
    if kept:
        lines += [kept, ""]
    return "\n".join(lines).rstrip() + "\n"
