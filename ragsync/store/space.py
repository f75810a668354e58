"""Disk space under the embedded store: watched so that the embedder stops taking batches before the disk is
full. The store memory-maps its files, so a write that finds no space kills the process with SIGBUS, without a
word; stopping early keeps every uncommitted item in Kafka until space is back."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ragsync.operations import metrics

MB = 1024 * 1024


@dataclass
class StoreSpace:
    """The free space of the filesystem that holds `path`, against a floor of `min_free_bytes`."""

    path: Path
    min_free_bytes: int
    free_bytes: Callable[[Path], int] = field(default=lambda path: shutil.disk_usage(path).free)

    def __post_init__(self) -> None:
        metrics.STORE_MIN_FREE_BYTES.set(self.min_free_bytes)

    def free(self) -> int:
        """Free bytes now on the filesystem of `path` (or of its nearest folder that exists); updates the metric."""
        free = self.free_bytes(_existing(self.path))
        metrics.STORE_FREE_BYTES.set(free)
        return free

    def shortage(self) -> str | None:
        """Why no batch should be taken now (free space under the floor), or None; updates the metric."""
        free = self.free()
        if free >= self.min_free_bytes:
            return None
        return (
            f"the store's disk at {self.path} has {free / MB:.0f} MB free, under STORE_MIN_FREE_MB="
            f"{self.min_free_bytes / MB:g}: taking no batches (nothing committed) until space is freed"
        )


def _existing(path: Path) -> Path:
    """`path`, or its nearest folder that exists (the store creates its own on first write)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
