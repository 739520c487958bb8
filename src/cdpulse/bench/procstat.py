"""What a process and the machine used, from /proc (Linux only).

>>> parse_stat("42 (python3 -m x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 99 0 0")
(250, 50)
>>> parse_status_kib("Name:\\tpython\\nVmHWM:\\t  204800 kB\\nVmRSS:\\t  102400 kB\\n", "VmRSS")
102400
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[int, int]:
    """(utime, stime) in clock ticks from the text of ``/proc/<pid>/stat``.

    The command name (field 2) may hold spaces and parentheses, so fields are counted
    from the last ``)``.
    """
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]), int(fields[12])


def parse_status_kib(text: str, name: str) -> int:
    """A ``kB`` line of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``), in KiB."""
    for line in text.splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise ValueError(f"/proc status has no {name} line")


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """CPU seconds used so far and resident memory of one process."""

    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int
    # The main thread's time runnable but waiting for a CPU (``/proc/<pid>/schedstat``):
    # how long the process was held up by others rather than by its own I/O.
    runqueue_seconds: float


def parse_schedstat(text: str) -> tuple[float, float]:
    """(seconds on a CPU, seconds waiting on a run queue) from ``/proc/<pid>/schedstat``.

    >>> parse_schedstat("522482532 585934552 1593")
    (0.522482532, 0.585934552)
    """
    on_cpu, waiting, _ = text.split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def sample_process(pid: int) -> ProcessSample:
    """Read ``/proc/<pid>/stat``, ``status`` and ``schedstat``."""
    utime, stime = parse_stat(Path(f"/proc/{pid}/stat").read_text())
    status = Path(f"/proc/{pid}/status").read_text()
    waiting = 0.0
    with contextlib.suppress(OSError, ValueError):
        waiting = parse_schedstat(Path(f"/proc/{pid}/schedstat").read_text())[1]
    return ProcessSample(
        (utime + stime) / CLOCK_TICKS,
        parse_status_kib(status, "VmRSS") * 1024,
        parse_status_kib(status, "VmHWM") * 1024,
        waiting,
    )


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, from ``/proc/stat``."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    # guest time is already counted in user and nice
    total = sum(values[:8])
    return total - idle, total


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def machine() -> dict[str, object]:
    """CPU model, cores, memory and kernel of this machine."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = parse_status_kib(Path("/proc/meminfo").read_text(), "MemTotal")
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def listening_inode(tcp_table: str, port: int) -> str | None:
    """The socket inode listening on ``port`` in the text of ``/proc/net/tcp`` (or tcp6)."""
    for line in tcp_table.splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
            return inode
    return None


def pid_listening_on(port: int) -> int | None:
    """The pid of the process listening on TCP ``port``, when this user may see it."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            inode = inode or listening_inode(Path(table).read_text(), port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == target:
                    return int(proc.name)
    return None


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """CPU seconds used so far by the whole machine and by some named processes."""

    at: float  # time.monotonic()
    machine_busy_seconds: float  # all cores together
    processes: dict[str, float]  # name -> CPU seconds


def cpu_snapshot(pids: dict[str, int | None]) -> CpuSnapshot:
    """The machine's busy CPU seconds and those of ``pids`` (names for the report)."""
    processes: dict[str, float] = {}
    for name, pid in pids.items():
        if pid is not None:
            with contextlib.suppress(OSError):
                processes[name] = sample_process(pid).cpu_seconds
    busy, _ = machine_busy_ticks()
    return CpuSnapshot(time.monotonic(), busy / CLOCK_TICKS, processes)


def cores_used(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """Cores busy between two snapshots: the machine, each named process, and the rest.

    ``others`` is what the named processes do not explain: other people's work on a
    shared machine (and the kernel), the figure that says how quiet a run really was.
    """
    seconds = after.at - before.at
    if seconds <= 0:
        return {}
    out = {"machine": (after.machine_busy_seconds - before.machine_busy_seconds) / seconds}
    for name, used in after.processes.items():
        if name in before.processes:
            out[name] = (used - before.processes[name]) / seconds
    out["others"] = out["machine"] - sum(v for k, v in out.items() if k != "machine")
    return out


def parse_comm_and_ticks(text: str) -> tuple[str, int]:
    """(command name, utime + stime ticks) from the text of ``/proc/<pid>/stat``.

    >>> parse_comm_and_ticks("42 (java) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 99 0 0")
    ('java', 300)
    """
    utime, stime = parse_stat(text)
    return text[text.index("(") + 1 : text.rindex(")")], utime + stime


def process_table() -> dict[int, tuple[str, int]]:
    """Every visible process: pid -> (command name, CPU ticks used so far)."""
    table: dict[int, tuple[str, int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                table[int(proc.name)] = parse_comm_and_ticks((proc / "stat").read_text())
    return table


def top_others(
    before: dict[int, tuple[str, int]],
    after: dict[int, tuple[str, int]],
    ours: set[int],
    seconds: float,
    count: int = 5,
) -> list[tuple[str, float]]:
    """The busiest processes that are not the run's own, as (name, cores), busiest first.

    Processes of one name are added up (a test suite's many pythons are one load). A
    process that started during the span counts from zero; one that ended is not seen.
    On a shared machine this says who else was using the cores, and how much.
    """
    if seconds <= 0:
        return []
    by_name: dict[str, float] = {}
    for pid, (name, ticks) in after.items():
        if pid in ours:
            continue
        previous = before.get(pid)
        used = ticks - (previous[1] if previous is not None and previous[0] == name else 0)
        if used > 0:
            by_name[name] = by_name.get(name, 0.0) + used / CLOCK_TICKS / seconds
    busiest = sorted(by_name.items(), key=lambda kv: kv[1], reverse=True)[:count]
    return [(name, round(cores, 3)) for name, cores in busiest]
