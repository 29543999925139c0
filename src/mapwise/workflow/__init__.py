"""The workflow file: its model, and loading it with strict, line-precise validation.

``load_workflow(path)`` reads a YAML file (prodigy's MapReduce spellings included) and
returns a ``LoadedWorkflow``, or raises ``mapwise.errors.WorkflowError`` naming the
file, the line and the key. The model describes a job and never runs one.
"""

from mapwise.workflow.loader import LoadedWorkflow, load_workflow, parse_workflow
from mapwise.workflow.model import Workflow

__all__ = ["LoadedWorkflow", "Workflow", "load_workflow", "parse_workflow"]
