"""The errors mapwise raises, each knowing the exit code it maps to.

One root, grouped by what the user should do next::

    MapwiseError                      exit 1 unless a subclass says otherwise
    ├── UserError                     exit 2: fix the command line or the workflow
    │   ├── WorkflowError             the workflow file is invalid (file, line, key)
    │   ├── InputError                the map input cannot be read or holds no items
    │   ├── InterpolationError        a ${...} variable cannot be resolved
    │   ├── UnknownJobError           no job with that id in the state directory
    │   ├── WorkflowChangedError      resume found an edited workflow file
    │   └── WorkspaceError            the workspace setting cannot work with this repository
    ├── JobLockedError                exit 3: another live process holds the job
    │   └── StateBusyError            its database stayed locked past the busy timeout
    ├── StateDamagedError             exit 4: run `mapwise verify` / `repair`
    ├── StorageError                  exit 1: the state's disk failed it; the state is not
    │   │                             known to be damaged: fix the cause, then resume
    │   ├── StorageFullError          no room to write the state; free some, resume
    │   └── StateReadOnlyError        the state cannot be written (permissions, read-only)
    ├── ExecutorError                 exit 1: the executor could not run commands
    └── GitError                      exit 1: a git command mapwise ran failed for good

The CLI maps them to exit codes in one place (``mapwise.cli.main``); the library raises
them and never exits. What SQLite reports is classified into this tree at the store's
edge (``mapwise.store.sqlerrors``), so no ``sqlite3`` error reaches a caller.
"""

from __future__ import annotations


class MapwiseError(Exception):
    """Root of every error mapwise raises on purpose."""

    exit_code: int = 1


class UserError(MapwiseError):
    """A mistake in what the user asked for; nothing ran that needs undoing."""

    exit_code = 2


class WorkflowError(UserError):
    """The workflow file is invalid; the message names the file, the line and the key.

    ``column`` is set where the parser knows it (a YAML syntax error): the message then
    starts ``file:line:column:``, the form editors and terminals jump to.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
        column: int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.key = key
        self.detail = message
        where = ""
        if path is not None:
            where = path if line is None else f"{path}:{line}"
            if line is not None and column is not None:
                where += f":{column}"
        prefix = f"{where}: " if where else ""
        keypart = f"{key}: " if key else ""
        super().__init__(f"{prefix}{keypart}{message}")


class InputError(UserError):
    """The map input could not be read, or produced no items where items were expected."""


class InterpolationError(UserError):
    """A ``${...}`` variable could not be resolved for an item or a phase."""


class UnknownJobError(UserError):
    """No job with the given id exists in the state directory."""


class WorkflowChangedError(UserError):
    """The workflow file changed since the job started and no choice was given."""


class JobLockedError(MapwiseError):
    """Another live process holds the job's lock."""

    exit_code = 3


class StateBusyError(JobLockedError):
    """Another process kept the job's database locked for longer than the busy timeout.

    A JobLockedError (exit 3) because that is what it means: SQLite's locks are released
    when their process dies, so a lock that outlasts the timeout is held by a live process
    (another mapwise writing the job, or any program with the file open in a transaction).
    The state is sound; waiting for that process, or stopping it, is the remedy.
    """


class StateDamagedError(MapwiseError):
    """The job's state fails its checks or is of a newer version."""

    exit_code = 4


class StorageError(MapwiseError):
    """The disk or file system failed the job's state, which is not known to be damaged."""


class StorageFullError(StorageError):
    """The job's state could not be written: the disk (or quota) is full."""


class StateReadOnlyError(StorageError):
    """The job's state cannot be written: a read-only file system or missing permissions."""


class ExecutorError(MapwiseError):
    """The executor could not run commands (for example, a scheduler is unreachable)."""


class WorkspaceError(UserError):
    """The workspace setting cannot work with this repository (exit 2); nothing was created."""


class GitError(MapwiseError):
    """A git command mapwise ran failed for good; its message holds git's own output in full."""
