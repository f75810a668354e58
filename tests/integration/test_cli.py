"""The `ragsync` command as a user runs it: separate processes, real everything."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragsync.app import options
from ragsync.app.application import App
from ragsync.events import TenantRequest
from ragsync.messaging.local_broker import free_port
from ragsync.messaging.sync_requests import publish_requests
from ragsync.model.encoder import TextEncoder
from ragsync.settings import Settings
from ragsync.store import Point, VectorStore, open_store
from ragsync.store.base import point_id
from tests.integration.conftest import embedders_running, fetcher_running, read_all, scripted_coordinator

RAGSYNC = [sys.executable, "-m", "ragsync"]


def _run(args: list[str], cwd: Path, timeout: float = 240, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.run(
        [*RAGSYNC, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_demo_syncs_every_service_and_a_second_run_converges(tmp_path: Path) -> None:
    first = _run(["demo", "--items-per-service", "40", "--json"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(first.stdout)
    assert sorted(r["service"] for r in report["runs"]) == [
        "analytics-service",
        "assessment-service",
        "devlab-service",
        "payment-service",
    ]
    assert all(r["status"] == "succeeded" and r["items_upserted"] == 40 for r in report["runs"])
    assert report["items_fetched"] == report["items_upserted"] == report["points_in_collection"] == 160

    second = _run(["demo", "--items-per-service", "40", "--json"], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads(second.stdout)["points_in_collection"] == 160

    hits = _run(["search", "card declined while paying", "--service", "payment-service", "-k", "3", "--json"], tmp_path)
    assert hits.returncode == 0, hits.stderr[-3000:]
    found = json.loads(hits.stdout)
    assert len(found) == 3 and {h["service"] for h in found} == {"payment-service"}
    assert "declined" in found[0]["text"]
    other = _run(["search", "card declined", "--tenant", "someone-else", "--json"], tmp_path)
    assert json.loads(other.stdout) == []


def test_related_edges_of_a_demo_are_listed_and_shown_under_search_hits(tmp_path: Path) -> None:
    demo = _run(["demo", "--items-per-service", "30", "--json"], tmp_path, RELATED_EDGES="on")
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert json.loads(demo.stdout)["related_edges"]["waiting"] == 0  # computed before the command ended

    listed = _run(["related", "pay_000001", "--service", "payment-service", "--json"], tmp_path)
    assert listed.returncode == 0, listed.stderr[-3000:]
    found = json.loads(listed.stdout)
    assert found["computed"] and 1 <= len(found["related"]) <= 5
    assert all(r["tenant_id"] == "default-tenant" and r["score"] >= 0.6 and r["text"] for r in found["related"])
    table = _run(["related", "pay_000001", "--service", "payment-service"], tmp_path)
    assert f"{len(found['related'])} related to payment-service/pay_000001" in table.stdout

    hits = _run(["search", "refund for a course", "-k", "2", "--related", "--json"], tmp_path)
    assert hits.returncode == 0, hits.stderr[-3000:]
    assert [len(hit["related"]) > 0 for hit in json.loads(hits.stdout)] == [True, True]
    shown = _run(["search", "refund for a course", "-k", "2", "--related"], tmp_path)
    assert shown.stdout.count("↳") >= 2

    missing = _run(["related", "pay_999999", "--service", "payment-service"], tmp_path)
    assert missing.returncode == 1 and "no item 'pay_999999' of payment-service" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.fixture
def coordinator_process(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [*RAGSYNC, "coordinator", "--port", str(port), "--items-per-service", "30"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            import socket

            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_sync_against_a_coordinator_process(tmp_path: Path, coordinator_process: str) -> None:
    result = _run(
        ["--log-level", "info", "sync", "--service", "devlab-service", "--service", "analytics-service", "--json"],
        tmp_path,
        COORDINATOR_GRPC_ENDPOINT=coordinator_process,
        BATCH_SYNC_LIMIT="7",
        LOG_FORMAT="json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    logged = [json.loads(line) for line in result.stderr.splitlines()]  # every line one JSON object
    assert all({"time", "level", "logger", "message"} <= set(line) for line in logged)
    fetched = [line for line in logged if line["message"].startswith("run ") and "fetched 30 items" in line["message"]]
    assert {line["service"] for line in fetched} == {"devlab-service", "analytics-service"}
    assert all(line["tenant_id"] == "default-tenant" and line["run_id"] for line in fetched)
    report = json.loads(result.stdout)
    assert [(r["service"], r["status"], r["pages"], r["items_upserted"]) for r in report["runs"]] == [
        ("devlab-service", "succeeded", 5, 30),
        ("analytics-service", "succeeded", 5, 30),
    ]


def test_sync_exits_non_zero_when_a_run_fails(tmp_path: Path) -> None:
    result = _run(
        ["sync", "--service", "payment-service", "--json"],
        tmp_path,
        COORDINATOR_GRPC_ENDPOINT=f"127.0.0.1:{free_port()}",
        COORDINATOR_MAX_ATTEMPTS="2",
        COORDINATOR_BACKOFF_INITIAL="0.05",
    )
    assert result.returncode == 1
    [run] = json.loads(result.stdout)["runs"]
    assert run["status"] == "failed" and "UNAVAILABLE after 2 attempts" in run["error"]
    assert "payment-service page 1" in result.stderr


def test_malformed_private_key_is_a_clear_start_up_error(tmp_path: Path) -> None:
    bad = base64.b64encode(b"not a key").decode()
    result = _run(["fetcher"], tmp_path, timeout=60, RAG_PRIVATE_KEY=bad)
    assert result.returncode == 2
    assert "RAG_PRIVATE_KEY" in result.stderr and "not a PEM key" in result.stderr


def test_status_and_dead_letters_on_a_fresh_broker_say_there_is_nothing_yet(settings: Settings, tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix}
    for command, answer in ((["status"], "no runs yet"), (["dead-letters", "list"], "no dead letters")):
        result = _run(command, tmp_path, 60, **env)
        assert result.returncode == 0, result.stderr[-2000:]
        assert answer in result.stdout and "Traceback" not in result.stderr
    as_json = _run(["status", "--json"], tmp_path, 60, **env)
    assert (as_json.returncode, json.loads(as_json.stdout)) == (0, [])


async def test_status_and_dead_letters_commands_read_the_topics(
    settings: Settings, store: VectorStore, encoder: TextEncoder, tmp_path: Path
) -> None:
    envelope = json.dumps({"data": [{"id": "a", "title": "kept"}, {"title": "no id"}, {"id": "b", "x": None}]})
    app = App(settings.model_copy(update={"run_max_dead_letter_share": 1.0}))  # 2 of 3 dead-lettered: kept going
    await app.ensure_topics()
    async with (
        app.ledger() as ledger,
        scripted_coordinator([(envelope, {})]) as (endpoint, _),
        fetcher_running(app, endpoint) as fetcher,
        embedders_running(app, store, encoder) as embedders,
    ):
        request = TenantRequest(service="demo-service", tenant_id="default-tenant")
        async with app.publisher() as publisher:
            await publish_requests(publisher, app.topics, [request])
        await ledger.wait([request.run_id], 60, guard=[fetcher, embedders])
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix}

    status = await asyncio.to_thread(_run, ["status", "--json"], tmp_path, 60, **env)
    assert status.returncode == 0, status.stderr[-2000:]
    [run] = json.loads(status.stdout)
    assert (run["run_id"], run["status"], run["items_fetched"], run["items_upserted"], run["dead_lettered"]) == (
        request.run_id,
        "succeeded",
        2,
        1,
        2,
    )
    # Piped at 80 columns, as the table's copyable 8-character run id: whole headers, the run on one line.
    table = await asyncio.to_thread(_run, ["status", "--run-id", request.run_id[:8]], tmp_path, 60, COLUMNS="80", **env)
    lines = table.stdout.splitlines()
    assert max(map(len, lines)) <= 80, table.stdout
    assert lines[1].split() == ["run", "service", "status", "fetched", "stored", "swept", "dead", "pending", "started"]
    assert lines[3].split()[:7] == [request.run_id[:8], "demo-service", "succeeded", "2", "1", "0", "2"], table.stdout

    readable = await asyncio.to_thread(_run, ["dead-letters", "list"], tmp_path, 60, COLUMNS="80", **env)
    assert max(map(len, readable.stdout.splitlines())) <= 80 and "has no id field" in readable.stdout
    listed = await asyncio.to_thread(_run, ["dead-letters", "list", "--json"], tmp_path, 60, **env)
    letters = json.loads(listed.stdout)
    assert sorted(letter["stage"] for letter in letters) == ["embedder", "fetcher"]
    assert any("has no id field" in letter["reason"] for letter in letters)

    replayed = await asyncio.to_thread(
        _run, ["dead-letters", "replay", "--run-id", request.run_id], tmp_path, 60, **env
    )
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert "replayed 1 dead letter(s)" in replayed.stdout and "1 cannot be replayed" in replayed.stderr
    items = await read_all(settings.bootstrap_servers, app.topics.items, 3)
    assert json.loads(items[-1])["item_id"] == "b"
    again = await asyncio.to_thread(
        _run,
        ["dead-letters", "replay", "--run-id", request.run_id, "--stage", "fetcher", "--json"],
        tmp_path,
        60,
        **env,
    )
    assert again.returncode == 0 and again.stderr == "", again.stderr[-2000:]
    answer = json.loads(again.stdout)
    assert answer["replayed"] == 0 and len(answer["not_replayable"]) == 1  # the record without an id


async def test_trigger_prints_the_runs_it_requested_as_json(settings: Settings, tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix}
    args = ["trigger", "--service", "devlab-service", "--service", "payment-service", "--tenant", "acme", "--json"]
    result = await asyncio.to_thread(_run, args, tmp_path, 60, **env)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = json.loads(result.stdout)
    assert [(r["service"], r["tenant_id"], r["sync_type"]) for r in runs] == [
        ("devlab-service", "acme", "batch"),
        ("payment-service", "acme", "batch"),
    ]
    published = await read_all(settings.bootstrap_servers, f"{settings.kafka_topic_prefix}sync-requests", 2)
    assert sorted(json.loads(value)["run_id"] for value in published) == sorted(r["run_id"] for r in runs)


def test_version_is_the_package_version(tmp_path: Path) -> None:
    import tomllib

    expected = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["version"]
    result = _run(["--version"], tmp_path, 60)
    assert (result.returncode, result.stdout) == (0, f"ragsync {expected}\n")


HOSTILE_TEXTS = [
    "refund [/] closing nothing, [bold red]x[/bold red] and [link=http://x]y[/link]",
    "refund \x1b[31mred\x1b[0m \x1b]8;;http://x\x07link\x1b]8;;\x07 and \u202eabc",
]


def test_search_prints_markup_and_escape_sequences_in_stored_texts_as_data(
    settings: Settings, encoder: TextEncoder, tmp_path: Path
) -> None:
    store = open_store(options.store(settings))
    try:
        store.ensure_collection(encoder.dimension, settings.embedding_model)
        vectors = encoder.encode(HOSTILE_TEXTS)
        tenant = "acme\nERROR forged line"
        store.upsert(
            [
                Point(
                    point_id(tenant, "s", f"i{n}"),
                    list(vector),
                    {"tenant_id": tenant, "service": "s", "item_id": f"[/]i{n}", "text": text},
                )
                for n, (text, vector) in enumerate(zip(HOSTILE_TEXTS, vectors, strict=True))
            ]
        )
    finally:
        store.close()
    for extra in ([], ["--related"]):
        shown = _run(
            ["search", "refund", "-k", "2", *extra], tmp_path, 120, QDRANT_PATH=str(settings.qdrant_path), COLUMNS="200"
        )
        assert shown.returncode == 0, shown.stderr[-3000:]
        assert "Traceback" not in shown.stderr
        assert not [c for c in shown.stdout if c in "\x1b\x07\u202e"], repr(shown.stdout)
        assert "[/]" in shown.stdout and "\\x1b[31mred" in shown.stdout and "\\u202eabc" in shown.stdout
        assert "acme\\nERROR" in shown.stdout
