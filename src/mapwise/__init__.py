"""mapwise: map-reduce workflows of commands over JSON work items, always resumable."""

from __future__ import annotations

__version__ = "0.1.0"

from mapwise.api import (
    dlq_list,
    dlq_purge,
    dlq_retry,
    export_job,
    get_job_progress,
    import_job,
    item_detail,
    job_status,
    list_checkpoints,
    list_jobs,
    list_resumable_jobs,
    repair_checkpoint,
    resume_job,
    run_workflow,
    verify_job,
)
from mapwise.engine.resume import Restored, ResumeOptions
from mapwise.engine.runner import JobResult
from mapwise.errors import MapwiseError
from mapwise.reports import DlqEntry, JobProgress, JobStatusReport, ResumableJob

__all__ = [
    "DlqEntry",
    "JobProgress",
    "JobResult",
    "JobStatusReport",
    "MapwiseError",
    "Restored",
    "ResumableJob",
    "ResumeOptions",
    "__version__",
    "dlq_list",
    "dlq_purge",
    "dlq_retry",
    "export_job",
    "get_job_progress",
    "import_job",
    "item_detail",
    "job_status",
    "list_checkpoints",
    "list_jobs",
    "list_resumable_jobs",
    "repair_checkpoint",
    "resume_job",
    "run_workflow",
    "verify_job",
]
