"""Processes seen through ``/proc``: liveness, process groups, a job's commands.

The tests ask the library's own procfs reader (``mapwise.executors.procgroups``), so that
"alive" means the same thing in a test's assertion as in the code under test.
"""

from __future__ import annotations

from mapwise.executors import orphans, procgroups


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped counts as dead)."""
    return procgroups.pid_alive(pid)


def live_members(pgids: set[int]) -> list[int]:
    """Live (not zombie) processes whose process group is one of ``pgids``."""
    return procgroups.live_members(pgids)


def job_processes(job_id: str) -> list[int]:
    """Live processes whose environment holds ``MAPWISE_JOB_ID=<job_id>`` (every command
    of the job has it, noted or not). Zombies are dead; this process is never counted."""
    return orphans.job_processes(job_id)


def parent_pid(pid: int) -> int:
    """The parent of the live process ``pid`` (of a command or an agent on a Dask worker:
    the worker's process)."""
    stat = procgroups.read_stat(pid)
    assert stat is not None, f"process {pid} is gone"
    return stat.ppid
