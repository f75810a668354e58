"""Tenants are a boundary: a service whose records name their own tenant syncs with exact per-tenant counts, its
sweep works in every tenant, a search scoped to one tenant never shows another's, and a request for one tenant
never stores another tenant's records. `ragsync sync` and `search` as processes, a real gRPC Coordinator."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ragsync.app.application import App
from ragsync.app.processes import Components
from ragsync.coordinator.request import TENANT_SCOPE_KEY
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator
from ragsync.events import DeadLetter
from ragsync.proto import coordinator_pb2, coordinator_pb2_grpc
from ragsync.settings import Settings
from ragsync.store.edge_store import EdgeStore
from tests.integration.conftest import coordinator_serving, read_all, request_sync, until_pages

SERVICE = "docs-service"
TENANTS = ("acme", "globex", "initech")
SCHEMA = f"""service = "{SERVICE}"
id_field = "id"
tenant_field = "org"
text_fields = ["title"]
"""


class TenantsCoordinator(coordinator_pb2_grpc.CoordinatorServiceServicer):
    """Records of three tenants, interleaved, on one page, each tenant's numbered alike (one id, three items);
    scoping by TENANT_SCOPE_KEY when `scopes`."""

    def __init__(self, per_tenant: int, scopes: bool) -> None:
        self.records = {
            f"{tenant}-{n}": {"id": f"page-{n}", "org": tenant, "title": f"{tenant} handbook page {n}"}
            for n in range(per_tenant)
            for tenant in TENANTS
        }
        self.scopes = scopes
        self.asked_for: list[str | None] = []

    async def Route(
        self, request: coordinator_pb2.RouteRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.RouteResponse:
        tenant = dict(request.metadata).get(TENANT_SCOPE_KEY)
        self.asked_for.append(tenant)
        listed = [r for r in self.records.values() if not (self.scopes and tenant) or r["org"] == tenant]
        return coordinator_pb2.RouteResponse(
            envelope_json=json.dumps({"data": listed}), normalized_fields={"has_more": "false"}
        )


@pytest.fixture
async def coordinator() -> AsyncIterator[tuple[str, TenantsCoordinator]]:
    servicer = TenantsCoordinator(per_tenant=20, scopes=False)
    async with coordinator_serving(servicer) as endpoint:
        yield endpoint, servicer


def _ragsync(args: list[str], folder: Path, endpoint: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "COORDINATOR_GRPC_ENDPOINT": endpoint,
        "SCHEMAS_DIR": str(folder / "schemas"),
        "BATCH_SYNC_SERVICES": SERVICE,
    }
    command = [sys.executable, "-m", "ragsync", *args]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=240)


async def _sync(folder: Path, endpoint: str, *options: str) -> tuple[int, dict[str, Any]]:
    result = await asyncio.to_thread(_ragsync, ["sync", "--service", SERVICE, "--json", *options], folder, endpoint)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    [run] = json.loads(result.stdout)["runs"]
    return result.returncode, run


def _points(folder: Path) -> dict[str, int]:
    store = EdgeStore.open(folder / "data" / "qdrant", "ragsync")
    try:
        return {tenant: store.count(tenant_id=tenant, service=SERVICE) for tenant in (*TENANTS, "default-tenant")}
    finally:
        store.close()


async def test_a_three_tenant_service_syncs_updates_and_shrinks_in_every_tenant(
    tmp_path: Path, coordinator: tuple[str, TenantsCoordinator]
) -> None:
    endpoint, servicer = coordinator
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / f"{SERVICE}.toml").write_text(f'service = "{SERVICE}"\nid_field = "id"\n')
    bad = _ragsync(["sync", "--service", SERVICE], tmp_path, endpoint)  # no text_fields: one line, exit code 2
    assert bad.returncode == 2 and "text_fields" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    (tmp_path / "schemas" / f"{SERVICE}.toml").write_text(SCHEMA)

    code, first = await _sync(tmp_path, endpoint)
    assert (code, first["status"], first["items_upserted"]) == (0, "succeeded", 60)
    assert {t: c["upserted"] for t, c in first["tenants"].items()} == {"acme": 20, "globex": 20, "initech": 20}
    assert _points(tmp_path) == {"acme": 20, "globex": 20, "initech": 20, "default-tenant": 0}

    for tenant in TENANTS:  # each tenant: one record changed, three gone upstream
        servicer.records[f"{tenant}-0"]["title"] += " (revised)"
        for n in (17, 18, 19):
            del servicer.records[f"{tenant}-{n}"]
    code, second = await _sync(
        tmp_path,
        endpoint,
    )
    assert (code, second["status"], second["items_upserted"], second["items_skipped"], second["swept"]) == (
        0,
        "succeeded",
        3,
        48,
        9,
    )
    assert {t: (c["upserted"], c["swept"]) for t, c in second["tenants"].items()} == {t: (1, 3) for t in TENANTS}
    assert _points(tmp_path) == {"acme": 17, "globex": 17, "initech": 17, "default-tenant": 0}

    search = _ragsync(["search", "handbook page", "--tenant", "globex", "-k", "10", "--json"], tmp_path, endpoint)
    hits = json.loads(search.stdout)
    assert len(hits) == 10 and {hit["tenant_id"] for hit in hits} == {"globex"}

    # A request for one tenant, from a Coordinator that does not scope: the others' records are dead-lettered
    # with both names, never stored under acme, and acme's own are found unchanged.
    # A record naming no tenant could be anyone's there: dead-lettered too, not stored as acme's.
    servicer.records["orphan"] = {"id": "orphan-1", "title": "a handbook page of no one's"}
    code, scoped = await _sync(tmp_path, endpoint, "--tenant", "acme")
    assert servicer.asked_for[-1] == "acme" and scoped["tenants"] is None
    assert (code, scoped["status"], scoped["items_skipped"], scoped["dead_lettered"]) == (1, "failed", 17, 35)
    assert "most common reason: another tenant (34)" in scoped["error"]
    assert "names tenant 'globex', but the request is for tenant 'acme'" in scoped["error"]
    assert _points(tmp_path) == {"acme": 17, "globex": 17, "initech": 17, "default-tenant": 0}
    del servicer.records["orphan"]

    servicer.scopes = True  # a Coordinator that scopes answers acme's records alone: nothing to dead-letter
    code, scoped = await _sync(tmp_path, endpoint, "--tenant", "acme")
    assert (code, scoped["status"], scoped["items_skipped"], scoped["dead_lettered"]) == (0, "succeeded", 17, 0)
    assert _points(tmp_path) == {"acme": 17, "globex": 17, "initech": 17, "default-tenant": 0}


async def test_a_run_id_reused_for_another_tenant_is_refused_by_a_running_fetcher(
    settings: Settings, tmp_path: Path
) -> None:
    app = App(settings)
    await app.ensure_topics()
    components = Components(settings, tmp_path)
    try:
        async with CoordinatorServer(DemoCoordinator(20)) as server, app.ledger() as ledger:
            components.start("fetcher", COORDINATOR_GRPC_ENDPOINT=server.endpoint, OPS_PORT="0")
            first = await request_sync(app, "devlab-service", tenant_id="acme")
            await until_pages(ledger, first.run_id, 1, timeout=90)
            await request_sync(app, "devlab-service", tenant_id="globex", run_id=first.run_id)
            [letter] = [
                DeadLetter.model_validate_json(value)
                for value in await read_all(app.bootstrap_servers, app.topics.dead_letters, 1, timeout=60)
            ]
            run = ledger.book.runs[first.run_id]
    finally:
        components.stop_all()
    assert (letter.run_id, letter.tenant_id, letter.stage) == (first.run_id, "globex", "fetcher")
    assert "belongs to a run of acme/devlab-service" in letter.reason
    assert (run.tenant_id, run.pages) == ("acme", 1) and run.request is not None and run.request.tenant_id == "acme"
