"""This process's CPU time and memory, and the container limits they are measured against."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path


class ProcessUsage:
    """This process's CPU time and resident memory, and the limits they are measured against
    (the container's cgroup limits where set, else the machine's)."""

    def __init__(self, cgroup: Path = Path("/sys/fs/cgroup")) -> None:
        self.cpus = available_cpus(cgroup)
        self.memory_limit = _memory_limit(cgroup) or os.sysconf("SC_PAGE_SIZE") * os.sysconf(
            "SC_PHYS_PAGES"
        )

    @staticmethod
    def cpu_seconds() -> float:
        """CPU time used by every thread of this process so far."""
        return time.process_time()

    @staticmethod
    def rss_bytes() -> int:
        """Resident memory now."""
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            return pages * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):  # not Linux: the peak is what there is
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> float:
    """CPUs this process may use: its container's cgroup quota, else the cores it may run on."""
    return _cpu_limit(cgroup) or float(len(os.sched_getaffinity(0)))


def _cpu_limit(cgroup: Path) -> float | None:
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _memory_limit(cgroup: Path) -> int | None:
    try:
        text = (cgroup / "memory.max").read_text().strip()
    except OSError:
        return None
    return None if text == "max" else int(text)
