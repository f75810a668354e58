"""A store disk short of space: the embedder stops taking batches before the disk is full (the store maps its
files, so a full disk would kill it with SIGBUS), says so on /readyz and in a metric, and finishes the run by
itself once space is added. On a real, small tmpfs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import REGISTRY

from ragsync.app import options
from ragsync.app.application import App
from ragsync.app.processes import Components, wait_for_status
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator
from ragsync.messaging.local_broker import free_port
from ragsync.model.encoder import TextEncoder
from ragsync.settings import Settings
from ragsync.store import open_store
from tests.integration.conftest import fetcher_running, request_sync

MB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 128 MB tmpfs, unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", str(disk)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _free(disk: Path) -> int:
    return int(
        subprocess.run(["df", "-B1", "--output=avail", str(disk)], capture_output=True, text=True).stdout.split()[-1]
    )


async def _readiness(port: int) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/readyz") as response:
        return response.status, await response.text()


async def test_a_store_disk_short_of_space_pauses_the_embedder_until_space_is_added(
    settings: Settings, encoder: TextEncoder, small_disk: Path
) -> None:
    port = free_port()
    settings = settings.model_copy(
        update={"qdrant_path": small_disk / "qdrant", "store_min_free_mb": 64, "ops_port": port}
    )
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (_free(small_disk) - 40 * MB))  # 40 MB left, under the 64 MB floor
    pauses = REGISTRY.get_sample_value("ragsync_store_space_pauses_total") or 0.0
    app = App(settings)
    await app.ensure_topics()
    store = open_store(options.store(settings))
    stop = asyncio.Event()
    async with CoordinatorServer(DemoCoordinator(200)) as coordinator, fetcher_running(app, coordinator.endpoint):
        embedders = asyncio.create_task(app.run_embedders(stop, 1, store, encoder, serve_ops=True))
        async with app.ledger() as ledger:
            request = await request_sync(app, "payment-service")
            async with asyncio.timeout(60):
                while (REGISTRY.get_sample_value("ragsync_store_space_pauses_total") or 0.0) == pauses:
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # paused: nothing taken, nothing stored, the embedder alive
            run = ledger.book.get(request.run_id)
            assert run is not None and not run.finished and run.items_upserted == 0
            assert store.count() == 0 and not embedders.done()
            status, body = await _readiness(port)
            assert status == 503 and "disk" in body and "STORE_MIN_FREE_MB=64" in body, body
            assert (REGISTRY.get_sample_value("ragsync_store_free_bytes") or 0) < 64 * MB

            # Space is added: the embedder resumes by itself and the run completes, nothing lost.
            subprocess.run(["mount", "-o", "remount,size=512m", str(small_disk)], check=True)
            [run] = await ledger.wait([request.run_id], 120, guard=[embedders])
            status, body = await _readiness(port)
            assert json.loads(body)["checks"]["disk"] is None, body  # (the search index may be building)
        stop.set()
        await embedders
    assert (run.status, run.items_upserted) == ("succeeded", 200)
    assert store.count() == 200
    store.close()


async def test_an_embedder_started_on_a_full_disk_waits_before_opening_the_store_and_says_why(
    settings: Settings, tmp_path: Path, small_disk: Path
) -> None:
    """Before, the store was opened first and the process died of SIGBUS on the full disk, without a word."""
    port = free_port()
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (_free(small_disk) - 8 * MB))  # 8 MB left, under the 64 MB floor
    components = Components(settings, tmp_path)
    env = {"QDRANT_PATH": str(small_disk / "qdrant"), "STORE_MIN_FREE_MB": "64", "OPS_PORT": str(port)}
    embedder = components.start("embedder", **env)
    try:
        async with asyncio.timeout(120):
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    status, body = await _readiness(port)
                    if status == 503:
                        break
                assert embedder.poll() is None, "the embedder exited"
                await asyncio.sleep(0.5)
        assert "STORE_MIN_FREE_MB=64" in json.loads(body)["checks"]["disk"], body
        await asyncio.sleep(3)  # still waiting, alive, and the store never opened
        assert embedder.poll() is None and not (small_disk / "qdrant").exists()
        filler.unlink()
        document = await wait_for_status(port, lambda s: s.get("consumers"), timeout=120)
        assert document["checks"]["disk"] is None and (small_disk / "qdrant").exists()
    finally:
        components.stop_all()
    log = (tmp_path / "embedder-0.log").read_text()
    assert "the store is not opened until then" in log and "has room again" in log
