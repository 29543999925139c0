"""The floor under B1: the least a coordinator can do per item and keep SPEC 4 and 5.

    python benchmarks/coordinator_floor.py threads|reactor [--items N] [--state-dir DIR]
                                          [--bare]

Runs N (2,000) ``sh -c true``, four at a time, with only the work that the guarantees
need and nothing of mapwise's own code around it: each slot gets its next item from
the durable transaction (WAL, ``synchronous=FULL``) that recorded its last result (the
slot rule, so a ``kill -9`` re-runs at most four items), and the transaction writes
what mapwise's does (its schema, made by ``mapwise.store.schema``, and the same
statements: the attempt, its step, the item, the claim, the job's time). Each command
gets its item file and its slot note, as in mapwise. ``--bare`` leaves out the item
file, the slot note, the step row and the job's time (the least durable bookkeeping).

``threads`` is mapwise's shape: a thread per slot and a writer thread, results and
claims handed over through queues. ``reactor`` is one thread for everything: it polls
every command's pipes and pidfd, commits what ended, and spawns the claims.

Prints the wall time, the items per second and this process's CPU (user, system) and
context switches. Not part of ``run.py``: a probe for the notes in docs/benchmarks.md
(issue 15, fifth session), to compare with B1's ``mapwise run`` of the same items.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import resource
import select
import shutil
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bare_spawn import settled

from mapwise.store.schema import create_schema

PARALLELISM = 4
ARGV = ["/bin/sh", "-c", "true"]
NOTE_BYTES = 1024

Result = tuple[int, int, int, float]  # attempt id, item index, exit code, duration


class Store:
    """The job's database, written as ``mapwise.store.batches`` writes it."""

    def __init__(self, folder: Path, items: int, *, bare: bool) -> None:
        self.bare = bare
        self.conn = sqlite3.connect(folder / "state.db", isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        create_schema(self.conn)
        self.conn.execute("BEGIN")
        self.conn.execute(
            "INSERT INTO job (id, job_id, workflow_name, workflow_path, workflow_source,"
            " workflow_sha256, status, phase, created_at, updated_at)"
            " VALUES (1, 'floor', 'floor', '', '', '', 'running', 'map', 0, 0)"
        )
        self.conn.executemany(
            "INSERT INTO items (idx, item_id, data, status) VALUES (?, ?, ?, 'pending')",
            [(i, str(i), str(i)) for i in range(items)],
        )
        self.conn.execute("COMMIT")

    def commit(self, results: list[Result], slots: int) -> list[tuple[int, int]]:
        """Record ``results`` and claim up to ``slots`` items (attempt id, index each)."""
        now = time.time()
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        for attempt_id, index, code, duration in results:
            conn.execute(
                "UPDATE attempts SET host = ?, ended_at = ?, duration = ?, outcome = ?,"
                " exit_code = ? WHERE id = ?",
                ("floor", now, duration, "succeeded", code, attempt_id),
            )
            if not self.bare:
                conn.execute(
                    "INSERT INTO steps (attempt_id, phase, run_no, step_index, label,"
                    " started_at, ended_at, duration, exit_code)"
                    " VALUES (?, 'map', 1, 0, 'shell: true', ?, ?, ?, ?)",
                    (attempt_id, now - duration, now, duration, code),
                )
            conn.execute(
                "UPDATE items SET status = 'succeeded', attempts = attempts + 1,"
                " duration = duration + ?, finished_at = ?, exit_code = ?, result = ?"
                " WHERE idx = ?",
                (duration, now, code, '{"captures":{}}', index),
            )
        claims = []
        for (index,) in conn.execute(
            "SELECT idx FROM items WHERE status = 'pending' ORDER BY idx LIMIT ?", (slots,)
        ).fetchall():
            number = conn.execute(
                "SELECT COUNT(*) FROM attempts WHERE item_idx = ?", (index,)
            ).fetchone()[0]
            cursor = conn.execute(
                "INSERT INTO attempts (item_idx, attempt_no, run_no, slot, host, started_at,"
                " outcome) VALUES (?, ?, 1, 0, 'floor', ?, 'running')",
                (index, number + 1, now),
            )
            conn.execute("UPDATE items SET status = 'running' WHERE idx = ?", (index,))
            assert cursor.lastrowid is not None
            claims.append((cursor.lastrowid, index))
        if results and not self.bare:
            conn.execute("UPDATE job SET updated_at = ? WHERE id = 1", (now,))
        conn.execute("COMMIT")
        return claims


@dataclass
class Command:
    """One running command: its claim, its descriptors, its item file."""

    attempt_id: int
    index: int
    slot: int
    proc: subprocess.Popen[bytes]
    fds: tuple[int, int, int]  # stdout, stderr, pidfd
    item_file: str | None
    started: float
    open: set[int] = field(default_factory=set)


class Runner:
    """Spawns and ends commands as mapwise's local pool does, with its per-item files."""

    def __init__(self, folder: Path, *, bare: bool) -> None:
        self.folder = folder
        self.bare = bare
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        (folder / "items").mkdir(mode=0o700)
        (folder / "slots").mkdir(mode=0o700)
        self.notes = [
            os.open(folder / "slots" / f"{slot}.json", os.O_RDWR | os.O_CREAT, 0o600)
            for slot in range(PARALLELISM)
        ]
        self.env = {**os.environ, "MAPWISE_JOB_ID": "floor"}

    def spawn(self, attempt_id: int, index: int, slot: int) -> Command:
        env, item_file = None, None
        if not self.bare:
            item_file = f"{self.folder}/items/{index}-1.json"
            fd = os.open(item_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, json.dumps(index).encode())
            os.close(fd)
            env = {
                **self.env,
                "MAPWISE_ITEM_ID": str(index),
                "MAPWISE_ITEM_INDEX": str(index),
                "MAPWISE_ATTEMPT": "1",
                "MAPWISE_ITEM_FILE": item_file,
            }
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        started = time.monotonic()
        proc = subprocess.Popen(
            ARGV,
            stdin=self.devnull,
            stdout=out_write,
            stderr=err_write,
            start_new_session=True,
            env=env,
        )
        os.close(out_write)
        os.close(err_write)
        if not self.bare:
            note = {"slot": slot, "pgid": proc.pid, "attempt_id": attempt_id, "since": time.time()}
            os.pwrite(self.notes[slot], json.dumps(note).encode().ljust(NOTE_BYTES), 0)
        fds = (out_read, err_read, os.pidfd_open(proc.pid))
        return Command(attempt_id, index, slot, proc, fds, item_file, started, set(fds))

    def end(self, command: Command) -> Result:
        """Kill what is left of its group, reap it, close and remove what it had."""
        with contextlib.suppress(OSError):
            os.killpg(command.proc.pid, 9)
        code = command.proc.wait()
        for fd in command.fds:
            os.close(fd)
        if command.item_file is not None:
            os.pwrite(self.notes[command.slot], b" " * NOTE_BYTES, 0)
            os.unlink(command.item_file)
        return command.attempt_id, command.index, code, time.monotonic() - command.started


def with_threads(store: Store, runner: Runner) -> None:
    """A thread per slot; a writer thread commits and hands each slot its next claim."""
    results: queue.SimpleQueue[tuple[int, Result]] = queue.SimpleQueue()
    work = [queue.SimpleQueue[tuple[int, int] | None]() for _ in range(PARALLELISM)]

    def slot(number: int) -> None:
        while (claim := work[number].get()) is not None:
            command = runner.spawn(*claim, number)
            poller = select.poll()
            for fd in command.fds:
                poller.register(fd, select.POLLIN)
            while not any(settled(command, fd) for fd, _ in poller.poll()):
                pass
            results.put((number, runner.end(command)))

    threads = [threading.Thread(target=slot, args=(n,)) for n in range(PARALLELISM)]
    for thread in threads:
        thread.start()
    running = 0
    for number, claim in enumerate(store.commit([], PARALLELISM)):
        work[number].put(claim)
        running += 1
    while running:
        ended = [results.get()]
        with contextlib.suppress(queue.Empty):
            while True:
                ended.append(results.get_nowait())
        claims = store.commit([result for _, result in ended], len(ended))
        running -= len(ended)
        for (number, _), claim in zip(ended, claims, strict=False):
            work[number].put(claim)
            running += 1
    for slot_work in work:
        slot_work.put(None)
    for thread in threads:
        thread.join()


def with_reactor(store: Store, runner: Runner) -> None:
    """One thread: poll every command, commit what ended, spawn the claims."""
    poller = select.poll()
    owners: dict[int, Command] = {}
    free = list(range(PARALLELISM))

    def start(claims: list[tuple[int, int]]) -> None:
        for attempt_id, index in claims:
            command = runner.spawn(attempt_id, index, free.pop())
            for fd in command.fds:
                poller.register(fd, select.POLLIN)
                owners[fd] = command

    start(store.commit([], PARALLELISM))
    while owners:
        ended = []
        for fd, _ in poller.poll():
            command = owners[fd]
            done = settled(command, fd)
            if fd not in command.open:  # its pipe shut, or the pidfd: no more to wait for
                poller.unregister(fd)
                del owners[fd]
            if done:
                ended.append(command)
        if ended:
            results = [runner.end(command) for command in ended]
            free.extend(command.slot for command in ended)
            start(store.commit(results, len(results)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=["threads", "reactor"])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--state-dir", type=Path, default=Path("floor-state"))
    parser.add_argument("--bare", action="store_true", help="no item file, note, step, time")
    args = parser.parse_args()
    folder: Path = args.state_dir.absolute()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True)
    store = Store(folder, args.items, bare=args.bare)
    runner = Runner(folder, bare=args.bare)
    before = resource.getrusage(resource.RUSAGE_SELF)
    clock = time.perf_counter()
    (with_threads if args.shape == "threads" else with_reactor)(store, runner)
    wall = time.perf_counter() - clock
    after = resource.getrusage(resource.RUSAGE_SELF)
    done = store.conn.execute("SELECT COUNT(*) FROM items WHERE status = 'succeeded'")
    assert done.fetchone()[0] == args.items
    switches = after.ru_nvcsw + after.ru_nivcsw - before.ru_nvcsw - before.ru_nivcsw
    print(
        f"{args.shape}{' --bare' if args.bare else ''}: {args.items} items in {wall:.3f} s"
        f" ({args.items / wall:,.0f} items/s); CPU per item"
        f" {(after.ru_utime - before.ru_utime) / args.items * 1000:.3f} ms user +"
        f" {(after.ru_stime - before.ru_stime) / args.items * 1000:.3f} ms system;"
        f" {switches / args.items:.1f} context switches per item"
    )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
