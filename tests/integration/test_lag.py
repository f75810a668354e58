"""The embedding group's lag as the scheduler measures it from the broker: it rises while every embedder is stopped
(SIGSTOP), which is when the lag alert matters, and a real Prometheus evaluating the alert rule shows it pending,
then firing. A scheduler and an embedder as processes of their own, item events published as the fetcher does."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from ragsync.app.application import App
from ragsync.app.processes import Components, wait_for_status
from ragsync.events import ItemEvent
from ragsync.messaging.local_broker import free_port
from ragsync.settings import Settings
from tests.integration.conftest import prometheus_running

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")
STOPPED_ITEMS = 60
THRESHOLD = 40  # the rule as deployed waits for 10,000 items over 10 minutes: the same rule, sized for a test


def _lag(port: int) -> list[float]:
    """ragsync_consumer_group_lag on the scheduler's /metrics, one value per partition."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return [float(line.split()[-1]) for line in lines if line.startswith("ragsync_consumer_group_lag{")]


async def _until(check: Any, timeout: float, what: str) -> float:
    """Seconds until `check()` is true."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await asyncio.to_thread(check):
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise TimeoutError(what)


async def _publish_items(app: App, first: int, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=app.bootstrap_servers)
    await producer.start()
    try:
        for n in range(first, first + count):
            event = ItemEvent(
                run_id="lag-run",
                tenant_id="default-tenant",
                service="lag-service",
                item_id=f"i{n}",
                page=1,
                record={"id": f"i{n}", "title": f"refund request number {n} for a withdrawn course"},
            )
            await producer.send(app.topics.items, event.to_bytes(), key=event.key.encode())
        await producer.flush()
    finally:
        await producer.stop()


def _rules(folder: Path) -> Path:
    """alerts.yml's ConsumerLagHigh, with the threshold and the wait sized for a test."""
    groups = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"]
    [rule] = [r for r in groups[0]["rules"] if r["alert"] == "ConsumerLagHigh"]
    rule["expr"] = rule["expr"].replace("> 10000", f"> {THRESHOLD}")
    rule["for"] = "5s"
    path = folder / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "lag", "interval": "1s", "rules": [rule]}]}))
    return path


async def _alert_state(base: str) -> str | None:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/api/v1/alerts") as response:
        alerts = (await response.json())["data"]["alerts"]
    states = [a["state"] for a in alerts if a["labels"]["alertname"] == "ConsumerLagHigh"]
    return states[0] if states else None


@pytest.mark.skipif(PROMETHEUS is None, reason="needs Debian's prometheus package (.ci/run installs it)")
async def test_the_lag_rises_on_the_schedulers_metrics_while_every_embedder_is_stopped_and_the_alert_fires(
    settings: Settings, tmp_path: Path
) -> None:
    app = App(settings)
    await app.ensure_topics()
    components = Components(settings, tmp_path)
    scheduler_port, embedder_port = free_port(), free_port()
    rules = _rules(tmp_path)
    scrape = {"job_name": "ragsync-scheduler", "static_configs": [{"targets": [f"127.0.0.1:{scheduler_port}"]}]}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [scrape],
    }
    assert PROMETHEUS is not None
    with prometheus_running(config, tmp_path, PROMETHEUS) as base:
        try:
            await _stop_embedders_and_watch(app, settings, components, scheduler_port, embedder_port, base)
        finally:
            components.stop_all()


async def _stop_embedders_and_watch(
    app: App, settings: Settings, components: Components, scheduler_port: int, embedder_port: int, base: str
) -> None:
    """Store a few items, stop the one embedder, publish more: the lag rises and the alert goes pending, then
    firing; the embedder goes on and the lag falls back to 0."""
    components.start("scheduler", OPS_PORT=str(scheduler_port), LAG_INTERVAL_S="1", BATCH_SYNC_ENABLED="false")
    embedder = components.start("embedder", OPS_PORT=str(embedder_port))
    await wait_for_status(embedder_port, lambda s: s["consumers"][0]["partitions"], timeout=120)
    await _publish_items(app, 0, 10)
    status = await wait_for_status(embedder_port, lambda s: s["consumers"][0]["items_processed"] >= 10, timeout=120)
    model = status["model"]  # 10 texts: EMBEDDING_PROCESS=auto has not decided, and encodes in place
    assert (model["embedding_process"], model["where"], model["encoding_in_child"]) == ("auto", "deciding", False)
    every_partition_at_0 = [0.0] * settings.kafka_partitions
    await _until(lambda: _lag(scheduler_port) == every_partition_at_0, 30, "the lag did not read 0 everywhere")

    embedder.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    await _publish_items(app, 10, STOPPED_ITEMS)
    rose = await _until(lambda: sum(_lag(scheduler_port)) == STOPPED_ITEMS, 30, "the lag did not rise")
    async with asyncio.timeout(60):
        while (state := await _alert_state(base)) != "pending":
            assert state is None, state  # pending comes first
            await asyncio.sleep(0.5)
        pending = time.monotonic() - stopped
        while await _alert_state(base) != "firing":
            await asyncio.sleep(0.5)
        firing = time.monotonic() - stopped
    embedder.send_signal(signal.SIGCONT)
    await _until(lambda: sum(_lag(scheduler_port)) == 0, 120, "the lag did not fall once the embedder went on")
    print(f"\nlag {STOPPED_ITEMS} {rose:.1f}s after SIGSTOP; alert pending {pending:.1f}s, firing {firing:.1f}s")
    assert pending < firing
