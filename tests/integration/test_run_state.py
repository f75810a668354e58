"""The run-state topic on the real broker: compacted, refused when it deletes, no item ids, history that expires,
and events of an older version skipped in one line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

from ragsync.app.application import App
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator
from ragsync.events import (
    Cursor,
    EmbedProgress,
    FetchProgress,
    PartitionCounts,
    RunEnded,
    RunMark,
    RunQueued,
    SyncRequest,
)
from ragsync.messaging.kafka import make_consumer, read_to_end
from ragsync.messaging.topics import StateTopicPolicyError, cleanup_policy
from ragsync.model.encoder import TextEncoder
from ragsync.producers.retention import History, RunRetention
from ragsync.runstate.channel import RunChannel
from ragsync.settings import Settings
from ragsync.store import VectorStore
from tests.integration.test_correctness import pipeline
from tests.integration.test_pipeline import expected_ids


async def test_the_state_topic_is_created_compacted(settings: Settings) -> None:
    topics = await App(settings).ensure_topics()
    admin = AIOKafkaAdminClient(bootstrap_servers=App(settings).bootstrap_servers)
    await admin.start()
    try:
        assert await cleanup_policy(admin, topics.sync_runs) == "compact"
        assert await cleanup_policy(admin, topics.items) is None  # the broker's default: it deletes by age
    finally:
        await admin.close()


async def test_a_state_topic_that_deletes_by_age_is_refused_in_one_line(settings: Settings, tmp_path: Path) -> None:
    app = App(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=app.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(app.topics.sync_runs, 2, 1, topic_configs={"cleanup.policy": "delete"})])
    finally:
        await admin.close()
    with pytest.raises(StateTopicPolicyError) as refused:
        await app.ensure_topics()
    message = str(refused.value)
    assert f"topic {app.topics.sync_runs} has cleanup.policy=delete" in message and "cleanup.policy=compact" in message
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": app.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "OPS_PORT": "0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "ragsync", "scheduler"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "cleanup.policy=delete" in line]
    assert line.startswith("cannot start:")


async def test_a_sync_puts_counts_and_offsets_on_the_state_topic_never_item_ids(
    settings: Settings, store: VectorStore, encoder: TextEncoder
) -> None:
    app = App(settings.model_copy(update={"batch_sync_limit": 100}))
    async with (
        CoordinatorServer(DemoCoordinator(300)) as coordinator,
        pipeline(app, coordinator.endpoint, store, encoder) as running,
    ):
        run = await running.sync("payment-service")
        run = await running.until_pruned(run.run_id)
    records = await read_to_end(make_consumer(app.kafka, group_id=None), app.topics.sync_runs)
    text = b"\n".join(m.value or b"" for m in records).decode()
    ids = expected_ids(["payment-service"], 300)
    assert not [i for i in ids if i in text], "an item id is on the state topic"
    assert (run.status, run.items_fetched, run.items_upserted, run.pruned) == ("succeeded", 300, 300, 0)
    keys = {m.key.decode() for m in records if m.key}
    assert keys == {run.fetch.key if run.fetch else "", *(e.key for e in run.embeds.values())} | {
        f"run/default-tenant/payment-service/{run.run_id}/{part}" for part in ("queued", "end", "pruned")
    } | {"cursor/default-tenant/payment-service"}
    # One record per page, per batch and partition, and a few per run: bounded by pages and batches, not items.
    print(f"\n{len(records)} records, {len(text)} bytes on the state topic for a 300-item sync")
    assert len(records) <= 60


async def test_expired_runs_are_removed_for_every_reader_and_cursors_stay(settings: Settings) -> None:
    app = App(settings)
    await app.ensure_topics()
    now = datetime.now(UTC)
    async with app.publisher() as publisher, app.ledger() as ledger:
        for n, age in enumerate([40, 30, 1]):
            started = now - timedelta(days=age)
            run = {"run_id": f"r{n}", "tenant_id": "t", "service": "s"}
            request = SyncRequest(**run)
            records = [
                RunQueued(**run, request=request, at=started),
                FetchProgress(**run, request=request, status="fetched", produced=1, marks={0: n}, started_at=started),
                EmbedProgress(**run, member="m", partitions={0: PartitionCounts(next_offset=n + 1, upserted=1)}),
                RunEnded(**run, at=started + timedelta(minutes=1)),
            ]
            for record in records:
                await publisher.send(app.topics.sync_runs, record.key, record)
        mark = RunMark(run_id="r2", sync_type="batch", started_at=now, finished_at=now)
        cursor = Cursor(tenant_id="t", service="s", last_success=mark, last_full=mark)
        await publisher.send(app.topics.sync_runs, cursor.key, cursor)
        await publisher.flush()
        await ledger.caught_up()
        assert sorted(ledger.book.runs) == ["r0", "r1", "r2"]
        before = REGISTRY.get_sample_value("ragsync_runs_expired_total") or 0
        retention = RunRetention(
            History(days=14, per_service=100), RunChannel(ledger=ledger, publisher=publisher, topics=app.topics)
        )
        assert await retention.expire(now) == 2
        assert REGISTRY.get_sample_value("ragsync_runs_expired_total") == before + 2
    async with app.ledger() as reader:
        await reader.caught_up()
        assert sorted(reader.book.runs) == ["r2"]
        assert reader.book.last_success("t", "s") == mark


async def test_events_of_the_older_version_are_skipped_with_one_warning(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(settings)
    await app.ensure_topics()
    older = {"v": 1, "run_id": "old", "tenant_id": "t", "service": "s", "source": "fetcher", "item_ids": ["a", "b"]}
    unreadable = REGISTRY.get_sample_value("ragsync_unreadable_events_total", {"topic": "sync-runs"}) or 0
    async with app.publisher() as publisher:
        for page in range(1, 4):
            await publisher.send_raw(app.topics.sync_runs, b"old", json.dumps({**older, "page": page}).encode())
        request = SyncRequest(run_id="new", tenant_id="t", service="s")
        queued = RunQueued(run_id="new", tenant_id="t", service="s", request=request)
        await publisher.send(app.topics.sync_runs, queued.key, queued)
    with caplog.at_level(logging.WARNING, logger="ragsync.runstate.ledger"):
        async with app.ledger() as ledger:
            await ledger.caught_up()
            await ledger.caught_up()  # an empty round after the end reports what was skipped
    assert sorted(ledger.book.runs) == ["new"]
    warnings = [r.getMessage() for r in caplog.records if "older ragsync version" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("skipped 3 run events"), warnings
    assert (REGISTRY.get_sample_value("ragsync_unreadable_events_total", {"topic": "sync-runs"}) or 0) == unreadable
