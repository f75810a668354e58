"""Every dashboard panel's query returns data from a real Prometheus scraping a real sync."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import aiohttp
import pytest

from ragsync.app.application import App
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator, Faults
from ragsync.messaging.local_broker import free_port
from ragsync.model.encoder import TextEncoder
from ragsync.settings import Settings
from ragsync.store import VectorStore
from tests.integration.conftest import prometheus_running, request_sync

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ragsync.json"
PROMETHEUS = shutil.which("prometheus")


def _scrape_config(ports: dict[str, int]) -> dict[str, object]:
    jobs = [
        {"job_name": f"ragsync-{name}", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        for name, port in ports.items()
    ]
    return {"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}


async def _query(session: aiohttp.ClientSession, base: str, expr: str) -> list[object]:
    async with session.get(f"{base}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    result: list[object] = body["data"]["result"]
    return result


@pytest.mark.skipif(PROMETHEUS is None, reason="needs Debian's prometheus package (.ci/run installs it)")
async def test_every_panel_query_returns_data_from_a_real_sync(
    settings: Settings, store: VectorStore, encoder: TextEncoder, tmp_path: Path
) -> None:
    ports = {"scheduler": free_port(), "fetcher": free_port(), "embedder": free_port()}
    apps = {
        name: App(
            settings.model_copy(
                update={
                    "ops_port": port,
                    "batch_sync_limit": 20,
                    "batch_sync_services": ["payment-service", "devlab-service"],
                    "related_edges": True,  # its panels show the related-content stage
                }
            )
        )
        for name, port in ports.items()
    }
    stop = asyncio.Event()
    await apps["scheduler"].ensure_topics()
    assert PROMETHEUS is not None
    with prometheus_running(_scrape_config(ports), tmp_path, PROMETHEUS) as base:
        try:
            async with CoordinatorServer(DemoCoordinator(120, Faults(latency_s=0.2))) as coordinator:
                tasks = [
                    asyncio.create_task(apps["scheduler"].run_scheduler(stop, serve_ops=True)),
                    asyncio.create_task(apps["fetcher"].run_fetcher(stop, coordinator.endpoint, serve_ops=True)),
                    asyncio.create_task(apps["embedder"].run_embedders(stop, 1, store, encoder, serve_ops=True)),
                ]
                async with apps["scheduler"].ledger() as ledger:
                    requests = [await request_sync(apps["scheduler"], s) for s in ("payment-service", "devlab-service")]
                    await ledger.wait([r.run_id for r in requests], 120, guard=tasks)
                    again = await request_sync(apps["scheduler"], "payment-service")
                    await ledger.wait([again.run_id], 60, guard=tasks)
                await asyncio.sleep(4)  # a few more scrapes after the last change
                panels = json.loads(DASHBOARD.read_text())["panels"]
                empty = []
                async with aiohttp.ClientSession() as session:
                    for panel in panels:
                        for target in panel["targets"]:
                            if not await _query(session, base, target["expr"]):
                                empty.append(panel["title"])
                stop.set()
                await asyncio.gather(*tasks)
        finally:
            stop.set()
    assert len(panels) >= 15
    assert empty == [], f"panels without data: {empty}"
