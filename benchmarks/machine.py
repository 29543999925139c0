"""The machine a benchmark ran on: CPU, memory, the state directory's disk, versions.

Figures without the machine mean nothing, so every report starts with this. Everything is
read from /proc, /sys and the repository's files; no git command runs.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read(Path("/proc/cpuinfo")).splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def cores() -> str:
    usable = len(os.sched_getaffinity(0))
    return f"{os.cpu_count()} logical ({usable} usable by this process)"


def memory() -> str:
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def _mount_of(path: Path) -> tuple[str, str, str]:
    """(device, mount point, filesystem type) of the mount holding ``path``."""
    target = str(path.resolve())
    best = ("?", "/", "?")
    for line in _read(Path("/proc/self/mounts")).splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        device, point, fstype = fields[0], fields[1], fields[2]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[1]):
            best = (device, point, fstype)
    return best


def _disk_kind(device: str) -> str:
    """What the kernel says of the block device (a VM's virtio disk hides the medium)."""
    name = Path(device).name
    block = Path("/sys/class/block") / name
    if not block.exists():
        return "no block device"
    if name.startswith(("vd", "xvd")):
        return "virtio disk of a VM; the medium underneath is not visible"
    parent = block.resolve().parent
    queue = block / "queue" if (block / "queue").exists() else parent / "queue"
    rotational = _read(queue / "rotational").strip()
    return {"0": "non-rotational (SSD)", "1": "rotational (HDD)"}.get(rotational, "unknown kind")


def fsync_latency(folder: Path, count: int = 100) -> str:
    """Median and 90th percentile of a 4 KiB write + fsync in ``folder``: what one commit of
    a SQLite transaction with ``synchronous=FULL`` waits for at least."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".fsync-probe-{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    times = []
    try:
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    median, p90 = times[len(times) // 2], times[int(len(times) * 0.9)]
    return f"median {median * 1000:.2f} ms, 90th percentile {p90 * 1000:.2f} ms"


def disk(path: Path) -> str:
    device, point, fstype = _mount_of(path)
    return f"{fstype} on {device} ({_disk_kind(device)}), mounted at {point}"


def mapwise_commit(root: Path) -> str:
    """The checked-out commit, read from ``.git`` (the working tree may differ from it)."""
    git = root / ".git"
    head = _read(git / "HEAD").strip()
    if not head.startswith("ref: "):
        return head or "unknown"
    ref = head.removeprefix("ref: ")
    sha = _read(git / ref).strip()
    if not sha:
        for line in _read(git / "packed-refs").splitlines():
            if line.endswith(" " + ref):
                sha = line.split()[0]
    return f"{sha[:12] or 'unknown'} ({ref.removeprefix('refs/heads/')})"


def tool_version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0] if first else "unknown"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine was busy, CPU seconds of this process and its reaped
    children) since boot: their difference over a run is what other work took."""
    fields = _read(Path("/proc/stat")).splitlines()[0].split()[1:]
    ticks = [int(value) for value in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    ours = os.times()
    return busy, ours.user + ours.system + ours.children_user + ours.children_system


def others_share(before: tuple[float, float], after: tuple[float, float], wall: float) -> float:
    """The share of the machine's CPU that other processes used during the run (0..1)."""
    others = (after[0] - before[0]) - (after[1] - before[1])
    cores = max(others, 0.0) / wall if wall > 0 else 0.0
    return cores / (os.cpu_count() or 1)


def describe(root: Path, state_dir: Path) -> list[tuple[str, str]]:
    """(label, value) pairs for the report's machine table."""
    from mapwise import __version__

    return [
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", cpu_model()),
        ("cores", cores()),
        ("RAM", memory()),
        ("load average at start (1, 5, 15 min)", load_average()),
        ("state dir disk", disk(state_dir)),
        ("fsync of 4 KiB in the state dir", fsync_latency(state_dir)),
        ("/dev/shm", disk(Path("/dev/shm")) if Path("/dev/shm").is_dir() else "absent"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("SQLite", sqlite3.sqlite_version),
        ("mapwise", f"{__version__}, commit {mapwise_commit(root)}, working tree as found"),
        ("GNU parallel", tool_version(["parallel", "--version"])),
        ("xargs", tool_version(["xargs", "--version"])),
    ]
