"""Limits that the workflow model and the command line share.

A module of its own, importing nothing: the command line names the limit in its options
and must not import the workflow model (pydantic) for that, so that the reading commands
(``jobs``, ``status``, ``dlq``) start without it.
"""

from __future__ import annotations

from typing import Final

# the most items one job runs at once (``map.max_parallel``, ``--max-parallel``): each is a
# thread and a process group, so a bigger number is a typo, never a plan
MAX_PARALLEL_LIMIT: Final = 10_000
