"""What spawning alone costs in Python: B1's commands without mapwise's bookkeeping.

    python benchmarks/bare_spawn.py threads|reactor [--items N]

Spawns N (2,000) ``sh -c true``, four at a time, each as mapwise's local pool does it:
``Popen`` in a new session with stdin on /dev/null, stdout and stderr on pipes, a pidfd,
``poll`` until the leader exited and the pipes closed, a kill of its group, the reap.
``threads`` runs four threads, one command each at a time (mapwise's slot threads);
``reactor`` runs one thread polling all four. Prints the wall time, this process's CPU
per item and its context switches. Not part of ``run.py``: a probe for the notes in
docs/benchmarks.md (issue 15, fourth session), to compare with B1's mapwise run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import select
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

PARALLELISM = 4
ARGV = ["/bin/sh", "-c", "true"]


@dataclass
class Command:
    """One running command and the descriptors still open on it."""

    proc: subprocess.Popen[bytes]
    fds: tuple[int, int, int]  # stdout, stderr, pidfd
    open: set[int] = field(default_factory=set)

    def end(self) -> None:
        """Kill what is left of its group, reap it, close its descriptors."""
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, 9)
        self.proc.wait()
        for fd in self.fds:
            os.close(fd)


def spawn(devnull: int) -> Command:
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    proc = subprocess.Popen(
        ARGV, stdin=devnull, stdout=out_write, stderr=err_write, start_new_session=True
    )
    os.close(out_write)
    os.close(err_write)
    fds = (out_read, err_read, os.pidfd_open(proc.pid))
    return Command(proc, fds, set(fds))


class Watched(Protocol):
    """A running command as ``settled`` sees it (here and in coordinator_floor.py)."""

    fds: tuple[int, int, int]  # stdout, stderr, pidfd
    open: set[int]


def settled(command: Watched, fd: int) -> bool:
    """Handle one readable descriptor; whether the command is done (exited, pipes shut)."""
    if fd == command.fds[2] or not os.read(fd, 65536):
        command.open.discard(fd)
    return not command.open


def with_threads(items: int, devnull: int) -> None:
    left = [items]
    lock = threading.Lock()

    def slot() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            command = spawn(devnull)
            poller = select.poll()
            for fd in command.fds:
                poller.register(fd, select.POLLIN)
            done = False
            while not done:
                for fd, _ in poller.poll():
                    poller.unregister(fd)
                    done = settled(command, fd) or done
            command.end()

    threads = [threading.Thread(target=slot) for _ in range(PARALLELISM)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def with_reactor(items: int, devnull: int) -> None:
    poller = select.poll()
    owner: dict[int, Command] = {}
    started = ended = 0

    def start() -> None:
        nonlocal started
        command = spawn(devnull)
        started += 1
        for fd in command.fds:
            poller.register(fd, select.POLLIN)
            owner[fd] = command

    for _ in range(min(PARALLELISM, items)):
        start()
    while ended < items:
        for fd, _ in poller.poll():
            command = owner.pop(fd)
            poller.unregister(fd)
            if settled(command, fd):
                command.end()
                ended += 1
                if started < items:
                    start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["threads", "reactor"])
    parser.add_argument("--items", type=int, default=2000)
    args = parser.parse_args()
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    wall, cpu = time.perf_counter(), time.process_time()
    (with_threads if args.mode == "threads" else with_reactor)(args.items, devnull)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"{args.mode}: {args.items} items in {wall:.2f} s ({args.items / wall:.0f} items/s);"
        f" this process {cpu / args.items * 1000:.3f} ms of CPU per item;"
        f" context switches {usage.ru_nvcsw} voluntary, {usage.ru_nivcsw} involuntary"
    )


if __name__ == "__main__":
    main()
