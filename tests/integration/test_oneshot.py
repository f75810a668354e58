"""One-shot syncs (`sync`, `demo`) on a broker of their own: every partition read directly instead of joining
groups, and the model loaded only once a batch has something to embed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from ragsync.app import options
from ragsync.cli.oneshot import one_shot_app, run_sync
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator
from ragsync.model.encoder import DEFAULT_MODEL, TextEncoder, configured_dimension, model_path
from ragsync.settings import Settings
from ragsync.store import open_store


async def test_a_one_shot_sync_joins_no_group_and_an_unchanged_re_sync_never_loads_the_model(
    settings: Settings, encoder: TextEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscribed: list[Any] = []  # every group subscription of any consumer, faust's included
    subscribe = AIOKafkaConsumer.subscribe

    def recording(consumer: AIOKafkaConsumer, *args: Any, **kwargs: Any) -> None:
        subscribed.append(kwargs.get("topics") or args)
        subscribe(consumer, *args, **kwargs)

    monkeypatch.setattr(AIOKafkaConsumer, "subscribe", recording)
    own = settings.model_copy(update={"kafka_bootstrap_servers": None, "embedder_max_batch": 16})
    store = open_store(options.store(own))
    try:
        async with CoordinatorServer(DemoCoordinator(60)) as coordinator, one_shot_app(own) as app:
            assert app.exclusive and app.bootstrap_servers != settings.kafka_bootstrap_servers
            services = ["payment-service", "assessment-service"]  # two requests, handled side by side
            first = await run_sync(
                app, store, encoder, services, embedders=2, coordinator_endpoint=coordinator.endpoint
            )
            assert [(r.status, r.items_upserted) for r in first.runs] == [("succeeded", 60)] * 2
            assert subscribed == [], "a consumer joined a group on a broker nobody else uses"
            assert encoder.loaded and configured_dimension(model_path(DEFAULT_MODEL)) == encoder.dimension == 384

            untouched = app.encoder()
            again = await run_sync(app, store, untouched, services, coordinator_endpoint=coordinator.endpoint)
            assert [(r.status, r.items_upserted, r.items_skipped) for r in again.runs] == [("succeeded", 0, 60)] * 2
            assert not untouched.loaded, "nothing changed, yet the model was loaded"
            assert again.points_in_collection == 120
    finally:
        store.close()
