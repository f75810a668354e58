"""ragsync components as processes of their own, as a deployment runs them: for the fault tests (`kill -9`) and
the scaling benchmark (one process per consumer).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragsync.settings import Settings


class Components:
    """`ragsync` component processes sharing one broker and topic prefix; `stop_all` kills what is left."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self._settings = settings
        self._folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, command: str, module: str = "ragsync", **env: str | None) -> subprocess.Popen[bytes]:
        """Start `ragsync <command>` (`python -m <module> <command>`: a benchmark's own variant of a component) with
        the settings' broker, prefix and data folder, plus `env` (None: unset)."""
        s = self._settings
        wanted: dict[str, str | None] = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "KAFKA_BOOTSTRAP_SERVERS": s.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": s.kafka_topic_prefix,
            "KAFKA_PARTITIONS": str(s.kafka_partitions),
            "KAFKA_SESSION_TIMEOUT_MS": str(s.kafka_session_timeout_ms),
            "DATA_DIR": str(s.data_dir),
            "EMBEDDING_MODEL": s.embedding_model,
            "TORCH_THREADS": "1",
            "EMBEDDING_PROCESS": s.embedding_process,
            **env,
        }
        full_env = {name: value for name, value in wanted.items() if value is not None}
        log = (self._folder / f"{command}-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", module, command],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self._folder,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        """Kill every process still running."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def status(port: int) -> dict[str, Any]:
    """A component's /status document."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


async def wait_for_status(port: int, ready: Callable[[dict[str, Any]], Any], timeout: float = 90) -> dict[str, Any]:
    """Poll the component's /status until `ready` accepts it; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            document = await asyncio.to_thread(status, port)
            if ready(document):
                return document
        except OSError:
            pass
        await asyncio.sleep(0.3)
    raise TimeoutError(f"component on port {port} never reached the expected status")
