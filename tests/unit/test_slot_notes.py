"""Slot notes: one writer whatever holds the file, notes a reader parses back, and a
resume's sweep that kills a noted group, but never a group whose id was given to a
stranger or that lives under another boot."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mapwise.executors.orphans import (
    SlotNoteBoard,
    clear_note,
    close_slot_notes,
    kill_orphans,
    live_orphans,
    make_note,
    read_notes,
    slot_board,
    write_note,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A command leading its own process group, killed and reaped at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_board_and_a_one_off_write_leave_the_same_file(tmp_path: Path) -> None:
    # Given one note written both ways
    note = make_note("3", 4242, attempt_id=7, item_index=2)
    write_note(tmp_path / "once", note)
    board = SlotNoteBoard(tmp_path / "board")
    try:
        board.write(note)
    finally:
        board.close()

    # Then the files are byte for byte the same, 0600 in a 0700 folder, and read back
    once, held = tmp_path / "once" / "3.json", tmp_path / "board" / "3.json"
    assert once.read_bytes() == held.read_bytes()
    assert once.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "once").stat().st_mode & 0o777 == 0o700
    assert read_notes(tmp_path / "once") == [note]


def test_a_shorter_note_covers_a_longer_one(tmp_path: Path) -> None:
    # Given a long note on a board, then a short one for the same slot
    board = SlotNoteBoard(tmp_path)
    try:
        board.write(dataclasses.replace(make_note("0", 100), host="h" * 300))
        short = make_note("0", 200)
        board.write(short)
    finally:
        board.close()

    # Then only the short note is read back
    assert read_notes(tmp_path) == [short]


def test_a_cleared_note_is_skipped(tmp_path: Path) -> None:
    write_note(tmp_path, make_note("coordinator", 100))
    write_note(tmp_path, make_note("1", 101))
    board = slot_board(tmp_path)
    try:
        board.write(make_note("2", 102))

        # When one note is cleared by path and one through the board
        clear_note(tmp_path, "coordinator")
        board.clear("2")

        # Then only the third is left
        assert [note.slot for note in read_notes(tmp_path)] == ["1"]
    finally:
        close_slot_notes(tmp_path)


def test_one_board_per_folder_until_closed(tmp_path: Path) -> None:
    board = slot_board(tmp_path)
    assert slot_board(tmp_path) is board
    close_slot_notes(tmp_path)
    assert slot_board(tmp_path) is not board
    close_slot_notes(tmp_path)


def test_the_sweep_kills_a_noted_group_and_clears_its_note(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    # Given a note of a live group, as a slot writes it once the command started
    write_note(tmp_path, make_note("0", sleeper.pid, attempt_id=1, item_index=0))
    assert live_orphans(read_notes(tmp_path)[0]) == [sleeper.pid]

    # When a resume sweeps the notes
    killed = kill_orphans(tmp_path)

    # Then the group was killed and the note emptied
    assert [note.pgid for note in killed] == [sleeper.pid]
    assert sleeper.wait(timeout=10) == -signal.SIGKILL
    assert read_notes(tmp_path) == []


def test_a_group_id_given_to_a_later_process_is_not_killed(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    # Given a note written before the process now holding that id started
    earlier = dataclasses.replace(make_note("0", sleeper.pid), noted_at_tick=0)
    write_note(tmp_path, earlier)

    # When a resume sweeps the notes
    assert kill_orphans(tmp_path) == []

    # Then the stranger lives on
    time.sleep(0.1)
    assert sleeper.poll() is None


def test_a_note_of_another_boot_or_host_names_nothing(sleeper: subprocess.Popen[bytes]) -> None:
    note = make_note("0", sleeper.pid)
    assert live_orphans(note) == [sleeper.pid]
    assert live_orphans(dataclasses.replace(note, boot_id="another boot")) == []
    assert live_orphans(dataclasses.replace(note, host="another-host")) == []
