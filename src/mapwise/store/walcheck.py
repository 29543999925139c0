"""Walking a WAL file's frames, as SQLite's recovery does, to find damage it would hide.

When SQLite opens a database after a crash it replays the WAL's frames up to the first
frame whose salts or checksum do not match, and drops the rest without a word. A
damaged byte in the middle of the WAL therefore loses every commit after it silently
(bug B of docs/reliability.md). This module reads the file before anything opens the
database: a frame that fails its checksum, followed by later frames of the same WAL
generation (the header's salts) among which a commit frame checks out, means committed
frames would be lost. A bad frame at the very end is a torn write of a transaction that
never committed: normal after a crash. So are frames a failed write left behind on a
full disk, after a frame the next write rewrote only in part: no commit frame among
them checks out, and nothing in them was committed.

The format (https://www.sqlite.org/fileformat2.html, "The Write-Ahead Log"): a 32-byte
header (magic, version, page size, checkpoint sequence, two salts, two checksum words),
then frames of a 24-byte header (page number, database size after a commit, the two
salts, two checksum words) and one page. Checksums run over the header and every frame
in turn, in big-endian words when the magic's low bit is set, little-endian otherwise.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

WAL_HEADER = 32
FRAME_HEADER = 24
_MAGICS = (0x377F0682, 0x377F0683)
_MASK = 0xFFFFFFFF


def _checksum(data: bytes, s1: int, s2: int, big: bool) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big else '<'}{len(data) // 4}I", data)
    for n in range(0, len(words), 2):
        s1 = (s1 + words[n] + s2) & _MASK
        s2 = (s2 + words[n + 1] + s1) & _MASK
    return s1, s2


def wal_damage(wal: Path) -> str | None:
    """Why the WAL at ``wal`` would lose committed frames, or None when it would not."""
    try:
        data = wal.read_bytes()
    except OSError:
        return None
    if len(data) < WAL_HEADER:
        return None  # empty or torn before any frame: nothing committed is in it
    magic, _version, page_size, _seq, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:32])
    if magic not in _MAGICS or page_size < 512 or page_size & (page_size - 1):
        return "the WAL file's header is damaged: its frames cannot be read"
    big = bool(magic & 1)
    s1, s2 = _checksum(data[:24], 0, 0, big)
    if (s1, s2) != (c1, c2):
        return "the WAL file's header fails its checksum: its frames cannot be read"
    size = FRAME_HEADER + page_size
    frames = _Frames(data, size, (salt1, salt2), big)
    offset = WAL_HEADER
    while offset + size <= len(data):
        s1, s2, stored, salted = frames.chain(offset, (s1, s2))
        if not salted or (s1, s2) != stored:
            break
        offset += size
    else:
        return None  # the valid frames end the file (or a torn last write): nothing lost
    later = frames.later(offset + size)
    if not later:
        return None  # nothing committed follows: nothing lost
    number = (offset - WAL_HEADER) // size + 1
    return (
        f"WAL frame {number} is damaged and {later} later frame(s) of the same log "
        "follow it: opening the database would drop them, and the commits they hold"
    )


@dataclasses.dataclass(frozen=True)
class _Frames:
    """The frames of one WAL file: its bytes, frame size, header salts and byte order."""

    data: bytes
    size: int
    salts: tuple[int, int]
    big: bool

    def chain(self, offset: int, chain: tuple[int, int]) -> tuple[int, int, tuple[int, int], bool]:
        """The checksum chain after the frame at ``offset``, its stored checksum, and
        whether its salts are the WAL header's."""
        data = self.data
        header = data[offset : offset + FRAME_HEADER]
        _page, _commit, f1, f2, k1, k2 = struct.unpack(">6I", header)
        s1, s2 = _checksum(header[:8], *chain, self.big)
        s1, s2 = _checksum(data[offset + FRAME_HEADER : offset + self.size], s1, s2, self.big)
        return s1, s2, (k1, k2), (f1, f2) == self.salts

    def later(self, offset: int) -> int:
        """How many frames of this WAL generation follow from ``offset``, when one of them
        is a commit frame that checks out against the frame before it; else 0.

        Every transaction ends with a commit frame, so damage (flipped bytes) has some
        after it that still check out. Frames a failed write left behind (a full disk:
        SQLite writes the next transaction over them, and a short write leaves a frame
        half new) have none: their transaction never wrote its commit frame whole, or it
        would have committed. SQLite drops those frames, rightly.
        """
        data, size = self.data, self.size
        frames = committed = 0
        while offset + size <= len(data):
            start = offset - size + 16  # the checksum in the header of the frame before
            previous = struct.unpack(">2I", data[start : start + 8])
            s1, s2, stored, salted = self.chain(offset, previous)
            if salted:
                frames += 1
                commit = struct.unpack(">I", data[offset + 4 : offset + 8])[0]
                committed += bool(commit) and (s1, s2) == stored
            offset += size
        return frames if committed else 0
