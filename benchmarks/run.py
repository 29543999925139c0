"""The benchmarks of issue 4: mapwise against GNU parallel and xargs, and its own targets.

    python benchmarks/run.py [--quick] [--only B1,B3] [--runs N] [--output FILE]

Measures B1 (throughput), B2 (cost of durability), B3 (resume and listing), B4 (scale),
B5 (checkpoints), B6 (workspaces), B7 (the job report) as they are described in
docs/benchmarks.md, taking the median of ``--runs`` runs of each figure, prints the table
and a PASS/MISS line per target, and writes docs/benchmarks.md with the machine it ran on.
It measures whatever the code in this checkout does; it changes nothing outside
``benchmarks/.work`` (and /dev/shm during B2) but the report.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from context import FULL, QUICK, Context
from harness import ROOT, WORK, log
from machine import cpu_seconds, describe, load_average, others_share
from report import kept_notes, render
from results import Row, Section, table, verdict_lines

NAMES = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
QUICK_OUTPUT = WORK / "benchmarks-quick.md"
BUSY = 0.10  # other processes' share of the CPU above which the figures are flagged


def _b1_b2(ctx: Context, chosen: set[str]) -> Section:
    from throughput import throughput

    return throughput(ctx, b1="B1" in chosen, b2="B2" in chosen)


def _b3(ctx: Context, chosen: set[str]) -> Section:
    from listing import listing

    return listing(ctx)


def _b4(ctx: Context, chosen: set[str]) -> Section:
    from scale import scale

    return scale(ctx)


def _b5(ctx: Context, chosen: set[str]) -> Section:
    from checkpoints import checkpoints

    return checkpoints(ctx)


def _b6(ctx: Context, chosen: set[str]) -> Section:
    from workspaces import workspaces

    return workspaces(ctx)


def _b7(ctx: Context, chosen: set[str]) -> Section:
    from job_report import job_report

    return job_report(ctx)


# (benchmarks a step covers, the step); B1 and B2 share their mapwise runs.
# B1 also runs mapwise on a two-worker Dask LocalCluster (dask_throughput.py).
STEPS: tuple[tuple[frozenset[str], Callable[[Context, set[str]], Section]], ...] = (
    (frozenset({"B1", "B2"}), _b1_b2),
    (frozenset({"B3"}), _b3),
    (frozenset({"B4"}), _b4),
    (frozenset({"B5"}), _b5),
    (frozenset({"B6"}), _b6),
    (frozenset({"B7"}), _b7),
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 1 run by default")
    parser.add_argument("--only", default=",".join(NAMES), help="e.g. B1,B3 (default: all)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 5)")
    parser.add_argument("--output", type=Path, default=None, help="default docs/benchmarks.md")
    args = parser.parse_args(argv)
    chosen = {name.strip().upper() for name in args.only.split(",") if name.strip()}
    unknown = chosen - set(NAMES)
    if unknown or not chosen:
        parser.error(f"--only takes names among {', '.join(NAMES)}")
    args.chosen = chosen
    args.runs = args.runs if args.runs is not None else (1 if args.quick else 5)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.output is None:
        args.output = QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT
    return args


def run_steps(ctx: Context, chosen: set[str]) -> Section:
    """Every chosen benchmark; one that breaks is reported and the others still run."""
    total = Section()
    for covers, step in STEPS:
        if not covers & chosen:
            continue
        try:
            section = step(ctx, chosen)
        except Exception as error:
            traceback.print_exc()
            names = "/".join(sorted(covers & chosen))
            total.notes.append(f"{names} failed: {type(error).__name__}: {error}")
            total.rows.append(Row(names, "the benchmark broke (see notes)", (), ""))
            continue
        total.rows += section.rows
        total.notes += section.notes
    return total


def busy_note(others: float) -> str:
    return (
        f"other processes used {others:.0%} of the machine's CPU during this run (see Machine): "
        "every figure here is slowed by them, the time figures and ratios most"
    )


def heading(ctx: Context, chosen: set[str], seconds: float) -> str:
    mode = "quick sizes (targets are stated for the full sizes)" if ctx.quick else "full sizes"
    names = ", ".join(sorted(chosen))
    return (
        f"{names}; {mode}; median of {ctx.runs} run(s); the whole run took {seconds / 60:.1f} min."
    )


def compile_bytecode() -> str | None:
    """Compile mapwise's modules once, as ``pip install`` does, so no measured process
    compiles them again; a note when the environment would otherwise make it do so.

    An editable install has no bytecode until a process writes it, and with
    PYTHONDONTWRITEBYTECODE set (as on the machine these figures come from) none ever
    does: every ``mapwise`` process would compile its sources, about 0.1 s each.
    """
    import compileall

    import mapwise

    compileall.compile_dir(Path(mapwise.__file__).parent, quiet=1)
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return (
            "mapwise's bytecode was compiled before measuring, as pip does on install: "
            "PYTHONDONTWRITEBYTECODE is set here, so otherwise each mapwise process would "
            "compile its sources first"
        )
    return None


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        import mapwise  # noqa: F401
    except ImportError:
        print("run.py: mapwise is not importable; activate its venv first", file=sys.stderr)
        return 2
    bytecode_note = compile_bytecode()
    ctx = Context(QUICK if args.quick else FULL, args.runs, args.quick, WORK)
    WORK.mkdir(parents=True, exist_ok=True)
    machine = describe(ROOT, WORK)
    started = time.perf_counter()
    cpu_before = cpu_seconds()
    try:
        results = run_steps(ctx, args.chosen)
    finally:
        ctx.cleanup()
    wall = time.perf_counter() - started
    others = others_share(cpu_before, cpu_seconds(), wall)
    after = 1 + next(i for i, (label, _) in enumerate(machine) if label.startswith("load"))
    machine[after:after] = [
        ("load average at end (1, 5, 15 min)", load_average()),
        ("CPU used by other processes during the run", f"{others:.0%} of all cores on average"),
    ]
    if others > BUSY:
        results.notes.insert(0, busy_note(others))
    if bytecode_note:
        results.notes.append(bytecode_note)
    command = shlex.join(["python", "benchmarks/run.py", *argv])
    title = heading(ctx, args.chosen, wall)
    print("\n".join(["", title, "", *table(results.rows), ""]))
    print("\n".join(verdict_lines(results.rows)))
    for note in results.notes:
        print(f"note: {note}")
    output: Path = args.output
    text = render(results.rows, machine, results.notes, command, title, kept_notes(output))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    log(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
