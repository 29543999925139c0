"""The job as Chrome trace-event JSON, for Perfetto (ui.perfetto.dev) or chrome://tracing.

The format is the Trace Event Format's JSON object form: ``{"traceEvents": [...]}``. Each
attempt and each of its template steps is a complete event (``"ph": "X"``, start and
duration in microseconds), hosts are processes and slots are threads (named by metadata
events, ``"ph": "M"``), and each run of the job is a global instant event (``"ph": "i"``,
``"s": "g"``). Times are microseconds from the job's first moment.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mapwise.report.model import OUTCOMES, AttemptSpan, RunSpan, StepSpan


def _us(moment: float, start: float) -> int:
    return round((moment - start) * 1_000_000)


def events(
    attempts: Sequence[AttemptSpan], steps: Sequence[StepSpan], runs: Sequence[RunSpan]
) -> Iterator[dict[str, Any]]:
    """Every event of the trace, metadata first."""
    start = min([a.start for a in attempts] + [r.start for r in runs], default=0.0)
    hosts = {host: n for n, host in enumerate(sorted({a.host for a in attempts}), start=1)}
    for host, pid in hosts.items():
        yield {"name": "process_name", "ph": "M", "pid": pid, "args": {"name": host}}
    for host, slot in sorted({(a.host, a.slot) for a in attempts}):
        yield {
            "name": "thread_name",
            "ph": "M",
            "pid": hosts[host],
            "tid": slot,
            "args": {"name": f"slot {slot}"},
        }
    place = {}
    for a in attempts:
        place[a.attempt_id] = (hosts[a.host], a.slot)
        args: dict[str, Any] = {"item": a.item_id, "attempt": a.attempt_no, "run": a.run_no}
        args["outcome"] = OUTCOMES[a.outcome][0]
        if a.error:
            args["error"] = a.error
        if a.cost is not None:
            args["cost_usd"] = a.cost
        yield {
            "name": f"{a.item_id} #{a.attempt_no}",
            "cat": "attempt",
            "ph": "X",
            "ts": _us(a.start, start),
            "dur": max(_us(a.end, start) - _us(a.start, start), 0),
            "pid": hosts[a.host],
            "tid": a.slot,
            "args": args,
        }
    for s in steps:
        where = place.get(s.attempt_id)
        if where is None:
            continue
        yield {
            "name": f"step {s.step_index + 1}: {s.label}",
            "cat": "step",
            "ph": "X",
            "ts": _us(s.start, start),
            "dur": max(_us(s.end, start) - _us(s.start, start), 0),
            "pid": where[0],
            "tid": where[1],
            "args": {"ok": s.ok},
        }
    for run in runs:
        what = "start" if run.run_no == 1 else "resume"
        yield {
            "name": f"run {run.run_no} ({what})",
            "cat": "run",
            "ph": "i",
            "s": "g",
            "ts": _us(run.start, start),
            "pid": 1,
            "tid": 0,
            "args": {"outcome": run.outcome},
        }


def write_trace(
    path: Path,
    attempts: Sequence[AttemptSpan],
    steps: Sequence[StepSpan],
    runs: Sequence[RunSpan],
    *,
    job_id: str,
) -> int:
    """Write the trace to ``path``; the number of events written."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        out.write('{"displayTimeUnit": "ms", "otherData": ')
        out.write(json.dumps({"job_id": job_id, "written_by": "mapwise"}))
        out.write(', "traceEvents": [\n')
        for event in events(attempts, steps, runs):
            out.write(("," if count else "") + json.dumps(event, ensure_ascii=False) + "\n")
            count += 1
        out.write("]}\n")
    return count
