"""A wrong answer never erases data: an upstream that answers a full sync with nothing, cuts its paging short, or
flags every record deleted gets its run held, with nothing deleted, until a person confirms. Real processes, a
real Coordinator server, the real model and the embedded store."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragsync.app.application import App
from ragsync.app.processes import Components, wait_for_status
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator, WrongAnswer
from ragsync.messaging.local_broker import free_port
from ragsync.runstate.ledger import RunLedger
from ragsync.runstate.runs import RunState
from ragsync.settings import Settings
from ragsync.store.edge_store import EdgeStore
from tests.integration.conftest import request_sync

RAGSYNC = [sys.executable, "-m", "ragsync"]
RECORDS = 150  # three pages of 50: over RUN_MIN_DELETE_HOLD (100), so the share decides
SERVICE = "payment-service"
TOKEN = "a-token-for-the-tests-0123456789"


def _ragsync(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "BATCH_SYNC_LIMIT": "50", **env}
    return subprocess.run([*RAGSYNC, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=240)


class CoordinatorProcess:
    """`ragsync coordinator` as its own process, started again to answer differently."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *options: str) -> None:
        self.stop()
        command = [*RAGSYNC, "coordinator", "--port", str(self.port), "--items-per-service", str(RECORDS), *options]
        self._process = subprocess.Popen(command, cwd=self._folder, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("the Coordinator process did not listen")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[CoordinatorProcess]:
    process = CoordinatorProcess(tmp_path)
    yield process
    process.stop()


def _points(folder: Path) -> int:
    store = EdgeStore.open(folder / "data" / "qdrant", "ragsync")
    try:
        return store.count(service=SERVICE)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("wrong", "swept", "deleted"),
    [(["empty"], 150, 0), (["cut-short", "--cut-after", "1"], 100, 0), (["all-deleted"], 0, 150)],
    ids=["empty answer", "paging cut short", "everything flagged deleted"],
)
def test_a_wrong_answer_to_a_one_shot_sync_is_held_and_deletes_nothing(
    tmp_path: Path, coordinator: CoordinatorProcess, wrong: list[str], swept: int, deleted: int
) -> None:
    coordinator.start()
    first = _ragsync(["sync", "--service", SERVICE, "--json"], tmp_path, COORDINATOR_GRPC_ENDPOINT=coordinator.endpoint)
    assert first.returncode == 0, first.stderr[-3000:]
    coordinator.start("--wrong-answer", *wrong)
    second = _ragsync(
        ["sync", "--service", SERVICE, "--json"], tmp_path, COORDINATOR_GRPC_ENDPOINT=coordinator.endpoint
    )
    assert second.returncode == 1, second.stderr[-3000:]
    [run] = json.loads(second.stdout)["runs"]
    assert run["status"] == "held" and run["held"] == {"swept": swept, "deleted": deleted, "points": RECORDS}
    removes = swept + deleted
    assert run["swept"] == 0 and run["error"].startswith(
        f"held: this full run would remove {removes} of the 150 points of {SERVICE}/default-tenant "
        f"({removes / 150:.0%} > RUN_MAX_DELETE_SHARE 30%"
    )
    assert f"ragsync prune {run['run_id']} --confirm" in second.stderr and "Traceback" not in second.stderr
    assert _points(tmp_path) == RECORDS
    if wrong == ["empty"]:
        assert "the last page 1: 0 records, has_more false" in run["error"]


def test_a_confirmed_one_shot_hold_deletes_exactly_what_it_held_once(
    tmp_path: Path, coordinator: CoordinatorProcess
) -> None:
    coordinator.start()
    env = {"COORDINATOR_GRPC_ENDPOINT": coordinator.endpoint, "RUN_MIN_DELETE_HOLD": "10"}  # 50 points are held too
    assert _ragsync(["sync", "--service", SERVICE], tmp_path, **env).returncode == 0
    coordinator.start("--wrong-answer", "cut-short", "--cut-after", "2")
    held = _ragsync(["sync", "--service", SERVICE, "--json"], tmp_path, **env)
    [run] = json.loads(held.stdout)["runs"]
    assert (held.returncode, run["status"], run["held"]["swept"]) == (1, "held", 50)
    unconfirmed = _ragsync(["prune", run["run_id"][:8]], tmp_path)
    assert unconfirmed.returncode == 2 and "add --confirm" in unconfirmed.stderr and _points(tmp_path) == RECORDS
    confirmed = _ragsync(["prune", run["run_id"][:8], "--confirm", "--json"], tmp_path)
    assert confirmed.returncode == 0, confirmed.stderr[-3000:]
    assert json.loads(confirmed.stdout) | {"held": None} == {
        "run_id": run["run_id"],
        "tenant_id": "default-tenant",
        "service": SERVICE,
        "held": None,
        "carried_out": True,
        "swept": 50,
        "deleted": 0,
    }
    assert _points(tmp_path) == 100
    again = _ragsync(["prune", run["run_id"][:8], "--confirm"], tmp_path)
    assert again.returncode == 1 and "refused: no held deletion of run" in again.stderr and _points(tmp_path) == 100


async def _until_done(ledger: RunLedger, run_id: str) -> RunState:
    [run] = await ledger.wait([run_id], 120)
    return run


def _metric(port: int, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.split()[-1])
    return 0.0


def _admin_prune(port: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/admin/prune",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_held_runs_of_running_components_are_counted_shown_and_confirmed(
    settings: Settings, tmp_path: Path
) -> None:
    """The fetcher and an embedder as processes of their own: each wrong answer is held (the metric, /status,
    `ragsync status`), a person confirms one over the CLI, and a confirmation after a newer full run is refused
    over the CLI and the admin endpoint."""
    app = App(settings)
    await app.ensure_topics()
    components = Components(settings, tmp_path)
    port = free_port()
    servicer = DemoCoordinator(RECORDS)
    held_metric = ("ragsync_deletions_held_total", f'service="{SERVICE}"')
    try:
        async with CoordinatorServer(servicer) as server, app.ledger() as ledger:
            components.start("embedder", OPS_PORT=str(port), ADMIN_TOKEN=TOKEN)
            components.start("fetcher", COORDINATOR_GRPC_ENDPOINT=server.endpoint, OPS_PORT="0", BATCH_SYNC_LIMIT="50")
            await wait_for_status(port, lambda s: s["consumers"][0]["partitions"])
            first = await _until_done(ledger, (await request_sync(app, SERVICE)).run_id)
            assert (first.status, first.items_upserted) == ("succeeded", RECORDS)
            assert _metric(port, *held_metric) == 0  # the series exists before the first hold: alerts see it rise
            held: dict[str, RunState] = {}
            for n, kind in enumerate(("empty", "all-deleted", "cut-short"), 1):
                servicer.wrong = WrongAnswer(kind, cut_after=1)
                run = await _until_done(ledger, (await request_sync(app, SERVICE)).run_id)
                assert run.status == "held" and run.held is not None and "nothing was deleted" in (run.error or "")
                assert _metric(port, *held_metric) == n
                held[kind] = run
            shown = await wait_for_status(port, lambda s: len(s["held_runs"]) == 3)
            assert [r["run_id"] for r in shown["held_runs"]] == [
                held[k].run_id for k in ("cut-short", "all-deleted", "empty")
            ]
            env = {
                "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
            }
            status = _ragsync(["status", "--json"], tmp_path, **env)
            held_rows = [r for r in json.loads(status.stdout) if r["status"] == "held"]
            assert [r["held"]["swept"] + r["held"]["deleted"] for r in held_rows] == [100, 150, 150]

            cut = held["cut-short"]
            confirmed = _ragsync(["prune", cut.run_id[:10], "--confirm", "--json"], tmp_path, **env)
            assert confirmed.returncode == 0, confirmed.stderr[-3000:]
            assert json.loads(confirmed.stdout)["swept"] == 100  # page 1's 50 were seen again, the rest went
            async with asyncio.timeout(30):  # this test's own ledger reads the pruner's record too
                while (after := ledger.book.runs[cut.run_id]).prune is None:
                    await asyncio.sleep(0.1)
            assert (after.status, after.swept) == ("succeeded", 100)

            servicer.wrong = None
            newer = await _until_done(ledger, (await request_sync(app, SERVICE)).run_id)
            assert (newer.status, newer.items_upserted, newer.items_skipped) == ("succeeded", 100, 50)
            refused = _ragsync(["prune", held["empty"].run_id, "--confirm"], tmp_path, **env)
            assert refused.returncode == 1 and f"a newer full run ({newer.run_id})" in refused.stderr
            code, answer = _admin_prune(port, {"run_id": held["empty"].run_id, "confirm": True})
            assert code == 409 and "a newer full run" in answer["error"]
            code, answer = _admin_prune(port, {"run_id": held["empty"].run_id})
            assert code == 422 and [f["field"] for f in answer["fields"]] == ["confirm"]
            assert await wait_for_status(port, lambda s: not s["held_runs"]) is not None
    finally:
        components.stop_all()
    assert _points(tmp_path) == RECORDS
