"""How a job's outcome becomes the process's exit code: the one table.

The engine reports what happened (``JobOutcome``); what number a shell sees is the command
line's contract: 0 the job completed with an empty DLQ; 1 it completed with items in the
DLQ, failed, or lost its executor; 130 and 143 it stopped cleanly after SIGINT or SIGTERM
(``128 + signal``, as a shell reports a process killed by that signal) and can be resumed.
Errors raised before or outside a run carry their own code (``MapwiseError.exit_code``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from mapwise.reports import JobOutcome

EXIT_CODES: Mapping[JobOutcome, int] = MappingProxyType(
    {
        JobOutcome.COMPLETED: 0,
        JobOutcome.COMPLETED_WITH_DLQ: 1,
        JobOutcome.FAILED: 1,
        JobOutcome.BUDGET_SPENT: 1,
        JobOutcome.INTERRUPTED_BY_SIGINT: 130,
        JobOutcome.INTERRUPTED_BY_SIGTERM: 143,
        JobOutcome.EXECUTOR_LOST: 1,
        JobOutcome.NOTHING_TO_RESUME: 0,  # resuming a finished job is not an error
    }
)


def exit_code_for(outcome: JobOutcome) -> int:
    """The exit code of a run that ended with ``outcome``."""
    return EXIT_CODES[outcome]
