"""Facts about processes and the machine, read from /proc (Linux).

The bench reports its own CPU use beside every figure, and the CPU and
memory of the local gateways and Redis, so a reader can tell which part
saturated. Remote processes are out of reach and reported as unknown.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int | None:
    """Resident memory of ``pid`` in KiB (VmRSS), None if it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def cpu_times(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds ``pid`` has used (all threads), None if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after it are plain.
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds ``pid`` has used, None if it cannot be read."""
    times = cpu_times(pid)
    return None if times is None else times[0] + times[1]


_LISTEN = "0A"
_LOOPBACK = ("127.", "localhost", "::1")


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (any address), from /proc/net/tcp{,6}."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN \
                    and int(fields[1].rpartition(":")[2], 16) == port:
                inodes.add(fields[9])
    return inodes


def listening_pid(host: str, port: int) -> int | None:
    """The pid of the process on this machine listening on ``host:port``, if findable.

    Only for loopback hosts (a gateway elsewhere is another machine's), and
    only when exactly one process holds the listening socket and its file
    descriptors are readable by us (same user, or root). Scans /proc once.
    """
    if not host.startswith(_LOOPBACK):
        return None
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return None
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    found.add(int(entry.name))
                    break
            except OSError:
                continue
    return found.pop() if len(found) == 1 else None


def own_cpu_seconds() -> float:
    """CPU seconds of this process (all threads), user plus system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_open_files_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.

    Done once at start, before local gateways are spawned, so they inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return int(target)
    return int(soft)


@dataclass(frozen=True, slots=True)
class Machine:
    cpu_model: str
    cpus: int
    """CPUs this process may run on (``nproc``)."""
    mem_total_mib: int
    mem_available_mib: int
    kernel: str
    python: str
    load_avg_1m: float
    """The machine's 1-minute load average when the run started: others' work shows here."""

    @classmethod
    def read(cls) -> Machine:
        model = "unknown"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        mem = _meminfo()
        return cls(
            cpu_model=model,
            cpus=len(os.sched_getaffinity(0)),
            mem_total_mib=mem.get("MemTotal", 0) // 1024,
            mem_available_mib=mem.get("MemAvailable", 0) // 1024,
            kernel=platform.release(),
            python=platform.python_version(),
            load_avg_1m=os.getloadavg()[0],
        )


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0])
    except OSError:
        pass
    return out


def machine_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


@dataclass(frozen=True, slots=True)
class CpuUse:
    """CPU over one measured window; ``util`` 1.0 means one core busy all the time."""

    wall_s: float
    bench_cpu_s: float
    bench_util: float
    procs: tuple[tuple[str, float], ...]
    """(name, util) of each local process watched (gateways, redis)."""
    machine_busy: float | None
    """Cores busy machine-wide (all processes, ours and others'); None if unknown."""
    others: float | None
    """Cores busy with processes that are neither the bench nor the watched ones."""

    @property
    def bench_saturated(self) -> bool:
        """The single-threaded bench was busy at least 90% of the window."""
        return self.bench_util >= 0.9


class CpuMeter:
    """Measures CPU use of the bench and of named local processes over a window."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self._pids = dict(pids)
        self._wall = time.monotonic()
        self._own = own_cpu_seconds()
        self._procs = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        self._machine = machine_ticks()

    def read(self) -> CpuUse:
        wall = max(time.monotonic() - self._wall, 1e-9)
        own = own_cpu_seconds() - self._own
        procs: list[tuple[str, float]] = []
        for name, pid in self._pids.items():
            start, now = self._procs[name], cpu_seconds(pid)
            if start is not None and now is not None:
                procs.append((name, (now - start) / wall))
        busy = others = None
        end = machine_ticks()
        if self._machine is not None and end is not None and end[1] > self._machine[1]:
            cpus = os.cpu_count() or 1
            busy = (end[0] - self._machine[0]) / (end[1] - self._machine[1]) * cpus
            others = max(0.0, busy - own / wall - sum(u for _, u in procs))
        return CpuUse(wall_s=wall, bench_cpu_s=own, bench_util=own / wall, procs=tuple(procs),
                      machine_busy=busy, others=others)
