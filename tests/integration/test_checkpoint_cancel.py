"""A stopping run does not wait for a checkpoint of a huge job (issue 15, fast stop).

A checkpoint write can be given up between two chunks: nothing of it stays behind (no
temporary file, no checkpoint), and the checkpoint thread closes within the bound it is
given instead of snapshotting millions of rows while the user waits for Ctrl-C.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mapwise.engine import checkpointer as checkpointer_module
from mapwise.engine.checkpointer import Checkpointer, CheckpointPolicy
from mapwise.store import checkpoint as checkpoint_module
from mapwise.store.checkpoint import (
    CheckpointCancelled,
    checkpoint_files,
    temporaries,
    write_checkpoint,
)
from mapwise.store.jobstore import JobStore
from mapwise.store.paths import JobPaths, job_paths


def _job(tmp_path: Path, items: int) -> JobPaths:
    paths = job_paths(tmp_path / "state", "j")
    paths.root.parent.mkdir(parents=True)
    store = JobStore.create(
        paths,
        workflow_name="t",
        workflow_path=str(tmp_path / "wf.yml"),
        workflow_source="name: t\n",
        workflow_sha256="0" * 64,
        options={},
    )
    store.freeze_items([(str(i), {"n": i}) for i in range(items)], input_sha256=None)
    store.close()
    return paths


def test_a_cancelled_write_leaves_neither_a_checkpoint_nor_a_temporary_file(
    tmp_path: Path,
) -> None:
    paths = _job(tmp_path, 20_000)
    cancel = threading.Event()
    cancel.set()
    store = JobStore.open(paths)
    try:
        with pytest.raises(CheckpointCancelled):
            write_checkpoint(store.conn, paths.checkpoints, "j", 1, cancel=cancel)
        assert checkpoint_files(paths.checkpoints) == []
        assert temporaries(paths.checkpoints) == []
        # the read transaction was ended: the connection writes again
        store.conn.execute("UPDATE job SET updated_at = 1 WHERE id = 1")
        written = write_checkpoint(store.conn, paths.checkpoints, "j", 1, cancel=threading.Event())
        assert written.exists()
    finally:
        store.close()


def test_a_bounded_close_gives_up_a_slow_checkpoint_and_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _job(tmp_path, 10)
    started = threading.Event()
    real_lines = checkpoint_module._lines

    def endless_lines(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        yield from real_lines(*args, **kwargs)  # type: ignore[arg-type]
        started.set()
        while True:  # a snapshot of millions of rows, as far as the writer can tell
            time.sleep(0.01)
            yield b""

    monkeypatch.setattr(checkpoint_module, "_lines", endless_lines)
    policy = CheckpointPolicy(every_seconds=3600, every_items=10**9, keep=5)
    checkpointer = Checkpointer(paths, policy)
    checkpointer.now(wait=False)
    assert started.wait(30)
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (checkpointer.close(within=0.2), closed.set()))
    closer.start()
    closer.join(60)
    assert closed.is_set(), "close(within=...) waited for the endless checkpoint"
    assert checkpoint_files(paths.checkpoints) == []
    assert temporaries(paths.checkpoints) == []


def test_a_close_without_a_bound_still_writes_the_final_checkpoint(tmp_path: Path) -> None:
    paths = _job(tmp_path, 100)
    checkpointer = Checkpointer(paths, checkpointer_module.CheckpointPolicy())
    checkpointer.close()
    assert len(checkpoint_files(paths.checkpoints)) == 1
