"""mapwise: map-reduce workflows of commands over JSON work items, always resumable.

The public API is imported lazily (PEP 562), so that reading commands such as
``mapwise jobs`` do not pay for the workflow model and the engine at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "DlqEntry": "mapwise.reports",
    "ItemPreview": "mapwise.types",
    "JobListing": "mapwise.reports",
    "JobOutcome": "mapwise.reports",
    "JobProgress": "mapwise.reports",
    "JobResult": "mapwise.types",
    "JobStatusReport": "mapwise.reports",
    "MapwiseError": "mapwise.errors",
    "Restored": "mapwise.types",
    "ResumableJob": "mapwise.reports",
    "ResumeOptions": "mapwise.types",
    "StartOptions": "mapwise.types",
    "ValidationReport": "mapwise.types",
    "ReportWritten": "mapwise.types",
    "check_job_id": "mapwise.api",
    "dlq_list": "mapwise.api",
    "dlq_purge": "mapwise.api",
    "dlq_retry": "mapwise.api",
    "export_job": "mapwise.api",
    "get_job_progress": "mapwise.api",
    "import_job": "mapwise.api",
    "item_detail": "mapwise.api",
    "job_status": "mapwise.api",
    "list_checkpoints": "mapwise.api",
    "list_jobs": "mapwise.api",
    "list_resumable_jobs": "mapwise.api",
    "repair_checkpoint": "mapwise.api",
    "resume_job": "mapwise.api",
    "run_workflow": "mapwise.api",
    "validate_workflow": "mapwise.api",
    "verify_job": "mapwise.api",
    "write_report": "mapwise.api",
}

__all__ = [
    "DlqEntry",
    "ItemPreview",
    "JobListing",
    "JobOutcome",
    "JobProgress",
    "JobResult",
    "JobStatusReport",
    "MapwiseError",
    "ReportWritten",
    "Restored",
    "ResumableJob",
    "ResumeOptions",
    "StartOptions",
    "ValidationReport",
    "__version__",
    "check_job_id",
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
    "validate_workflow",
    "verify_job",
    "write_report",
]

if TYPE_CHECKING:
    from mapwise.api import (
        check_job_id,
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
        validate_workflow,
        verify_job,
    )
    from mapwise.errors import MapwiseError
    from mapwise.reports import (
        DlqEntry,
        JobListing,
        JobOutcome,
        JobProgress,
        JobStatusReport,
        ResumableJob,
    )
    from mapwise.types import (
        ItemPreview,
        JobResult,
        Restored,
        ResumeOptions,
        StartOptions,
        ValidationReport,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mapwise' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
