"""Watching something in a thread while a benchmark runs: a process's memory, this process's responsiveness."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Self


class Sampler:
    """Calls `sample` every `interval` seconds in a thread while the `with` block runs, and once at its end."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        """Take one sample."""
        raise NotImplementedError


def memory_mb(pid: int) -> dict[str, float]:
    """The process's memory from /proc/<pid>/status, in MB: VmHWM (peak resident), RssAnon (its heap and
    stacks) and RssFile (files mapped in, such as an embedded store's segments: page cache, reclaimable)."""
    wanted = ("VmHWM", "RssAnon", "RssFile")
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    missing = [name for name in wanted if name not in fields]
    if missing:
        raise RuntimeError(f"/proc/{pid}/status has no {', '.join(missing)} line")
    return {name: int(fields[name].split()[0]) / 1024 for name in wanted}


def children_mb(pid: int) -> float:
    """The peak resident MB (VmHWM) of the process's children, together (an embedder's model process)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the field after the state
            if parent == pid:
                total += memory_mb(int(stat.parent.name))["VmHWM"]
        except (OSError, RuntimeError, ValueError, IndexError):
            continue  # it ended while being read
    return total


class MemoryPeaks(Sampler):
    """The peak of each figure of `memory_mb` of a process while the block runs, and of its children's
    (`children`: the sum of their VmHWM)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(interval)
        self._pid = pid
        self._samples = 0
        self.peaks: dict[str, float] = {"children": 0.0}

    def sample(self) -> None:
        figures = memory_mb(self._pid)
        if self._samples % 5 == 0:  # a walk over /proc takes 1.5 ms, and a child's peak only grows
            figures["children"] = children_mb(self._pid)
        self._samples += 1
        for name, value in figures.items():
            self.peaks[name] = max(value, self.peaks.get(name, 0.0))


class LongestPause(Sampler):
    """The longest stretch, while the block runs, in which another thread of this process could not run (a
    call holding the GIL freezes the event loop, heartbeats and health checks)."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(interval)
        self._last = time.perf_counter()
        self.seconds = 0.0

    def sample(self) -> None:
        now = time.perf_counter()
        self.seconds = max(self.seconds, now - self._last)
        self._last = now
