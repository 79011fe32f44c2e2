"""The machine: CPU model, usable cores, and how busy other processes kept it during a measurement."""

from __future__ import annotations

import os
import platform
import time


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _busy_seconds():
    """Seconds all CPUs spent not idle (steal included: time the hypervisor gave away), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


class Background:
    """Share of the machine's CPUs used by other processes (or stolen) between start() and stop().

    Our own CPU time, spinning thread pools included, is subtracted; a high figure
    means the timings of that stretch were disturbed by someone else.
    """

    def start(self):
        t = os.times()
        self.t0 = (time.perf_counter(), _busy_seconds(), t.user + t.system + t.children_user + t.children_system)
        return self

    def stop(self):
        wall0, busy0, own0 = self.t0
        t = os.times()
        wall, busy = time.perf_counter() - wall0, _busy_seconds()
        own = t.user + t.system + t.children_user + t.children_system - own0
        if busy is None or busy0 is None or wall <= 0:
            return None
        share = (busy - busy0 - own) / (wall * (os.cpu_count() or 1))
        return round(min(max(share, 0.0), 1.0), 3)
