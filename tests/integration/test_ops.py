"""The operations endpoints over real HTTP: health, readiness, status, metrics, and the admin trigger."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from ragsync.app import options
from ragsync.app.application import App
from ragsync.events import SyncRequest
from ragsync.operations.endpoints import OpsOptions, OpsServer, OpsTokens
from ragsync.producers.scheduler import Scheduler
from ragsync.settings import Settings, describe_invalid
from tests.integration.conftest import read_all


@asynccontextmanager
async def scheduler_ops(settings: Settings, token: str | None) -> AsyncIterator[tuple[str, App]]:
    app = App(settings)
    await app.ensure_topics()
    async with app.run_channel() as channel:
        scheduler = Scheduler(options.schedule_plan(settings), options.request_defaults(settings), channel)

        async def failing() -> str | None:
            return "broker unreachable (injected)"

        server = OpsServer(
            "scheduler",
            OpsOptions(host="127.0.0.1", tokens=OpsTokens(admin=token)),
            lambda: {"scheduler": scheduler.state.as_json()},
            {"broker": failing},
            {"sync": scheduler.requested_over_http},
        )
        await server.start()
        try:
            yield f"http://127.0.0.1:{server.port}", app
        finally:
            await server.stop()


async def _post(url: str, body: Any, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as response:
        text = await response.text()
        return response.status, json.loads(text) if response.content_type == "application/json" else {"text": text}


async def test_admin_sync_needs_the_token_and_publishes_requests(settings: Settings) -> None:
    async with scheduler_ops(settings, "s3cret") as (base, app):
        url = f"{base}/admin/sync"
        assert (await _post(url, {}, None))[0] == 401
        assert (await _post(url, {}, "wrong"))[0] == 403
        refused: list[tuple[Any, str, Any]] = [
            ({"sync_type": "hourly"}, "sync_type", "hourly"),
            ({"colour": "red"}, "colour", "red"),
            ({"services": "payment-service"}, "services", "payment-service"),  # a string, not a list
            ({"services": ["devlab-service", "made-up-service"]}, "services", ["devlab-service", "made-up-service"]),
            (["devlab-service"], "body", ["devlab-service"]),
        ]
        for sent, field, given in refused:
            status, body = await _post(url, sent, "s3cret")
            assert status == 422 and body["error"] == "invalid body", body
            assert [(f["field"], f["value"]) for f in body["fields"]] == [(field, given)], body
        assert (await _post(url, {"services": "payment-service"}, "wrong"))[0] == 403  # the token comes first
        status, body = await _post(url, {"services": ["devlab-service"], "sync_type": "incremental"}, "s3cret")
        assert status == 202
        [run] = body["runs"]
        [value] = await read_all(app.bootstrap_servers, app.topics.sync_requests, 1)
    request = SyncRequest.model_validate_json(value)
    assert (request.run_id, request.service, request.sync_type, request.trigger) == (
        run["run_id"],
        "devlab-service",
        "incremental",
        "http",
    )


async def test_admin_sync_is_off_without_a_token(settings: Settings) -> None:
    async with scheduler_ops(settings, None) as (base, _):
        status, _ = await _post(f"{base}/admin/sync", {}, "anything")
    assert status == 404


async def test_health_readiness_status_and_metrics(settings: Settings) -> None:
    async with scheduler_ops(settings, None) as (base, _), aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{base}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["checks"] == {"broker": "broker unreachable (injected)"}
        async with session.get(f"{base}/status") as response:
            body = await response.json()
            assert body["ready"] is False and body["scheduler"]["cron"] == "0 2 * * *"
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
            assert response.status == 200 and "ragsync_coordinator_calls_total" in text


async def _get(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status


async def test_the_ops_token_guards_status_and_admin_and_leaves_probes_and_metrics_open(settings: Settings) -> None:
    app = App(settings)
    await app.ensure_topics()
    ops = "o" * 16
    async with app.run_channel() as channel:
        scheduler = Scheduler(options.schedule_plan(settings), options.request_defaults(settings), channel)
        served = OpsOptions(host="127.0.0.1", tokens=OpsTokens(ops=ops))
        server = OpsServer("scheduler", served, lambda: {}, {}, {"sync": scheduler.requested_over_http})
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            assert [await _get(f"{base}/status", token) for token in (None, "wrong-token-of-16-chars", ops)] == [
                401,
                403,
                200,
            ]
            assert [await _get(f"{base}/{path}", None) for path in ("healthz", "readyz", "metrics")] == [200] * 3
            assert (await _post(f"{base}/admin/sync", {}, None))[0] == 401
            assert (await _post(f"{base}/admin/sync", {"services": ["devlab-service"]}, ops))[0] == 202
        finally:
            await server.stop()


def test_a_short_token_is_refused_at_start_up_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_TOKEN", "too-short")
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    assert (
        describe_invalid(raised.value)
        == "OPS_TOKEN: a token needs 16 characters at least (`openssl rand -hex 16` makes one)"
    )
