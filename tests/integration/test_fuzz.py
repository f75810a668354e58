"""Fuzzing through the real thing: hostile records through `ragsync sync` and the reading commands as processes,
and hostile envelopes through the real fetcher stage.

Each generated sync case costs a real sync and seven reading commands (about a minute here), so CI runs few: see
SYNC_CASES and the README's Tests section.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from ragsync.app.application import App
from ragsync.demo.coordinator_server import QUERY_TEXT
from ragsync.events import SERVICE_PATTERN
from ragsync.messaging.local_broker import LocalBroker
from ragsync.proto import coordinator_pb2, coordinator_pb2_grpc
from ragsync.settings import Settings
from tests.integration.conftest import fetcher_running, request_sync, scripted_coordinator
from tests.nasty_data import (
    BEYOND_INT64,
    CONTROLS,
    HUNDRED_KB,
    NASTY,
    STORABLE_NUMBERS,
    acting_characters,
    any_text,
    json_values,
    nested,
    on_the_wire,
    storable_values,
)

RAGSYNC = [sys.executable, "-m", "ragsync"]
SYNC_CASES = 3  # generated sync cases per CI run, besides the fixed corpus of the nastiest strings
ENVELOPE_CASES = 5  # generated runs of bad envelopes per CI run, each followed by a good one
SCHEMA = """service = {service}
id_field = "ref.id"
tenant_field = "owner.tenant"
title_field = "title"
text_fields = ["body"]
"""
# What each kind of bad record's dead letter says (their reasons, in a few stable words).
NO_ID, BAD_ID, EMPTY_ID, SURROGATE, TOO_DEEP, NO_TEXT, TWICE = (
    "has no id field",
    "is not a string or integer id",
    "is empty",
    "lone UTF-16 surrogate",
    "levels deep",
    "no text to embed",
    "appears twice",
)
NO_SCHEMA_ID = "has no ref.id"
BUILT_IN = {"payment-service", "assessment-service", "devlab-service", "analytics-service", "knowledge-service"}


def argument(text: str) -> str:
    """`text` as a command-line argument can carry it: no NUL, no lone surrogate."""
    return on_the_wire(text).replace("\x00", "")


@dataclass
class ServiceRecords:
    """One service's page of records and the reasons its bad records must be dead-lettered for."""

    service: str
    records: list[dict[str, Any]] = field(default_factory=list)
    dead: Counter[str] = field(default_factory=Counter)

    def bad(self, record: dict[str, Any], reason: str) -> None:
        self.records.append(record)
        self.dead[reason] += 1

    @property
    def stored(self) -> int:
        return len(self.records) - sum(self.dead.values())


@dataclass
class SyncCase:
    """A sync of two services: one by the generic rule, one by a schema that reads each record's own tenant."""

    default_tenant: str
    generic: ServiceRecords
    schemed: ServiceRecords
    probe_id: str  # a stored item of the generic service, for `related`
    query: str


def _generic(service: str, ids: list[str], texts: list[str], bodies: list[Any]) -> tuple[ServiceRecords, str]:
    """A page by the generic rule: a good record per id, text and body (the index keeps the ids apart), then one
    record of each kind that must be dead-lettered; and the first record's id as stored (it fits a command line)."""
    page = ServiceRecords(service)
    for i, (id_text, text, body) in enumerate(zip(ids, texts, bodies, strict=False)):
        page.records.append({"id": f"{i}-{id_text}", "title": f"t {text}", "body": body})
    probe = f"0-{argument(ids[0])}"
    page.records[0]["id"] = probe
    page.bad({"title": f"t {texts[0]}"}, NO_ID)
    for wrong in (True, 1.5, [1], {"a": 1}, None):
        page.bad({"id": wrong, "title": "t"}, BAD_ID)
    page.bad({"id": " \t\n", "title": "t"}, EMPTY_ID)
    page.bad({"id": "x\ud800", "title": "t"}, SURROGATE)
    page.bad({"id": "deep", "body": nested(150, texts[-1])}, TOO_DEEP)
    page.bad({"id": "none", "note": None, "empty": ""}, NO_TEXT)
    page.bad({"id": probe, "title": "t again"}, TWICE)
    return page, probe.strip()


def _schemed(service: str, tenants: list[str], texts: list[str]) -> ServiceRecords:
    """A page by the schema: each record naming its own tenant (empty: the default one), then the two it refuses."""
    page = ServiceRecords(service)
    for i, (tenant, text) in enumerate(zip(tenants, texts, strict=False)):
        ref = {"id": f"{i}-{on_the_wire(text[:40])}"}  # a lone surrogate in an id is a bad record of its own
        page.records.append({"ref": ref, "owner": {"tenant": tenant}, "title": f"t {text}"})
    page.bad({"owner": {"tenant": "t"}, "title": "t"}, NO_SCHEMA_ID)
    page.bad({"ref": {"id": "s"}, "owner": {"tenant": "acme\udc80"}, "title": "t"}, SURROGATE)
    return page


@st.composite
def sync_cases(draw: st.DrawFn) -> SyncCase:
    names = st.from_regex(SERVICE_PATTERN.replace("{0,99}", "{0,30}"), fullmatch=True)
    generic, schemed = draw(st.lists(names.filter(lambda n: n not in BUILT_IN), min_size=2, max_size=2, unique=True))
    count = draw(st.integers(1, 6))
    texts = draw(st.lists(st.one_of(any_text, st.sampled_from(NASTY)), min_size=count, max_size=count))
    if draw(st.booleans()):
        texts[-1] = HUNDRED_KB
    ids = draw(st.lists(any_text.map(on_the_wire), min_size=count, max_size=count))
    deep = st.builds(nested, st.integers(1, 60), storable_values)
    bodies = draw(st.lists(st.one_of(storable_values, deep), min_size=count))
    tenants = draw(st.lists(any_text.map(on_the_wire), min_size=count, max_size=count))
    page, probe = _generic(generic, ids, texts, bodies)
    default_tenant = draw(any_text.map(argument).filter(lambda t: 0 < len(t) <= 200))
    return SyncCase(default_tenant, page, _schemed(schemed, tenants, texts), probe, argument(texts[0]) or "x")


def nastiest_case() -> SyncCase:
    """The fixed corpus: every nasty string, every control character and huge number, 100 KB and deep nesting."""
    texts = [*NASTY, *CONTROLS, HUNDRED_KB]
    bodies: list[Any] = [*STORABLE_NUMBERS, nested(60, "[/]\x1b[31m"), *NASTY]
    page, probe = _generic("fuzz.nasty-1", [on_the_wire(text) for text in (*CONTROLS, *NASTY)], texts, bodies * 10)
    tenants = [text for text in (*NASTY, *CONTROLS) if "\ud800" not in text]
    return SyncCase("acme\n2026 ERROR [/]\x1b[31m\u202e", page, _schemed("fuzz_nasty-2", tenants, texts), probe, "[/]")


class FuzzCoordinator(coordinator_pb2_grpc.CoordinatorServiceServicer):
    """Answers each service's page 1 with its records, as one last page."""

    def __init__(self, pages: dict[str, str]) -> None:
        self.pages = pages

    def Route(self, request: coordinator_pb2.RouteRequest, context: grpc.ServicerContext) -> Any:
        matched = QUERY_TEXT.match(request.query_text)
        envelope = self.pages.get(matched["service"], "[]") if matched else "[]"
        return coordinator_pb2.RouteResponse(envelope_json=envelope, normalized_fields={"has_more": "false"})


@contextlib.contextmanager
def coordinator_serving(pages: list[ServiceRecords]) -> Iterator[str]:
    """A real gRPC Coordinator in this process serving the pages (as JSON the way a Coordinator might write it:
    NaN and Infinity, lone surrogates as escapes); its endpoint."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    answers = {page.service: json.dumps({"data": page.records}) for page in pages}
    coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(FuzzCoordinator(answers), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


@dataclass(frozen=True)
class Ran:
    """A finished command: exit code, stdout and stderr as bytes."""

    args: list[str]
    code: int
    stdout: bytes
    stderr: bytes

    def json(self) -> Any:
        return json.loads(self.stdout)


def ragsync(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 240) -> Ran:
    """Run `ragsync args` as a process, piped (so a table's own styling is off); check it behaved with any data."""
    done = subprocess.run(
        [*RAGSYNC, *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, timeout=timeout, check=False
    )
    ran = Ran(args, done.returncode, done.stdout, done.stderr)
    said = f"{args[:3]} exited {ran.code}: {done.stderr[-3000:]!r}"
    assert ran.code == 0, said
    assert b"Traceback" not in done.stderr and b"Traceback" not in done.stdout, said
    for name, output in (("stdout", done.stdout), ("stderr", done.stderr)):
        text = output.decode("utf-8")  # raises on bytes that are not UTF-8
        acting = acting_characters(text)
        assert not acting, f"{args[:3]} wrote {sorted(set(acting))!r} to {name}"
    return ran


def _sync_env(broker: LocalBroker, folder: Path, case: SyncCase, endpoint: str) -> dict[str, str]:
    schemas = folder / "schemas"
    schemas.mkdir()
    service = case.schemed.service
    (schemas / f"{service}.toml").write_text(SCHEMA.format(service=json.dumps(service)), encoding="utf-8")
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": f"f{uuid.uuid4().hex[:10]}.",
        "KAFKA_PARTITIONS": "2",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "DATA_DIR": str(folder / "data"),
        "QDRANT_PATH": str(folder / "qdrant"),
        "SCHEMAS_DIR": str(schemas),
        "DEFAULT_TENANT_ID": case.default_tenant,
        "COORDINATOR_GRPC_ENDPOINT": endpoint,
        "RELATED_EDGES": "on",
        "RUN_MAX_DEAD_LETTER_SHARE": "1.0",  # most of a page is bad on purpose: the run goes on
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "100",
    }


def _check_sync(case: SyncCase, broker: LocalBroker) -> None:
    pages = [case.generic, case.schemed]
    with tempfile.TemporaryDirectory() as tmp, coordinator_serving(pages) as endpoint:
        folder = Path(tmp)
        env = _sync_env(broker, folder, case, endpoint)
        services = [f"--service={page.service}" for page in pages]
        ragsync(["sync", "--timeout", "150", *services], folder, env)
        _check_runs(case, folder, env)
        _check_dead_letters(case, folder, env)
        _check_reading(case, folder, env)


def _check_runs(case: SyncCase, folder: Path, env: dict[str, str]) -> None:
    runs = {run["service"]: run for run in ragsync(["status", "--json"], folder, env).json()}
    for page in (case.generic, case.schemed):
        run = runs[page.service]
        assert (run["status"], run["tenant_id"]) == ("succeeded", case.default_tenant), run
        assert (run["items_upserted"], run["dead_lettered"]) == (page.stored, sum(page.dead.values())), run
        assert run["items_upserted"] + run["dead_lettered"] == len(page.records)
    ragsync(["status"], folder, env)


def _check_dead_letters(case: SyncCase, folder: Path, env: dict[str, str]) -> None:
    letters = ragsync(["dead-letters", "list", "--json"], folder, env).json()
    for page in (case.generic, case.schemed):
        reasons = [letter["reason"] for letter in letters if letter["service"] == page.service]
        said = Counter(_which(reason, page.dead) for reason in reasons)
        assert said == page.dead, reasons
    ragsync(["dead-letters", "list"], folder, env)


def _which(reason: str, expected: Counter[str]) -> str:
    """The expected reason `reason` says, the longest first ("no text to embed (every field is empty...)" is
    not "is empty"); the reason itself when it says none."""
    return next((why for why in sorted(expected, key=len, reverse=True) if why in reason), reason)


def _check_reading(case: SyncCase, folder: Path, env: dict[str, str]) -> None:
    generic = case.generic.service
    tenant = f"--tenant={case.default_tenant}"
    hits = ragsync(["search", f"--service={generic}", tenant, "-k", "1000", "--json", "--", case.query], folder, env)
    assert len({hit["item_id"] for hit in hits.json()}) == case.generic.stored  # a long text is several chunks
    assert case.probe_id in {hit["item_id"] for hit in hits.json()}
    ragsync(["search", "-k", "20", "--related", "--", case.query], folder, env)
    ragsync(["related", f"--service={generic}", tenant, "--", case.probe_id], folder, env)


@pytest.mark.timeout(300 * (SYNC_CASES + 1))
@given(sync_cases())
@settings(
    max_examples=SYNC_CASES,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: each try is a minute of real sync
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@example(nastiest_case())
def test_hostile_records_through_sync_and_every_reading_command(broker: LocalBroker, case: SyncCase) -> None:
    _check_sync(case, broker)


def test_integers_past_64_bits_are_stored_or_dead_lettered(broker: LocalBroker) -> None:
    page = ServiceRecords("fuzz-numbers")
    page.records += [{"id": f"n{i}", "title": "a number", "n": number} for i, number in enumerate(BEYOND_INT64)]
    page.records.append({"id": "plain", "title": "no number"})
    with tempfile.TemporaryDirectory() as tmp, coordinator_serving([page]) as endpoint:
        folder = Path(tmp)
        case = SyncCase("default-tenant", page, ServiceRecords("fuzz-unused"), "plain", "number")
        env = _sync_env(broker, folder, case, endpoint)
        ragsync(["sync", "--timeout", "30", f"--service={page.service}"], folder, env)
        [run] = ragsync(["status", "--json"], folder, env).json()
        assert run["items_upserted"] + run["dead_lettered"] == len(page.records)


@given(st.lists(st.from_regex(SERVICE_PATTERN, fullmatch=True).map(lambda n: f"{n}!"), min_size=1, max_size=2))
@settings(max_examples=3, deadline=None)
@example(["[/]", "a\x1b[31mb\u202e"])
def test_a_name_no_request_takes_is_one_line_and_exit_code_2(tmp_path_factory: Any, names: list[str]) -> None:
    folder = tmp_path_factory.mktemp("names")
    done = subprocess.run(
        [*RAGSYNC, "sync", *(f"--service={name}" for name in names)],
        cwd=folder,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == b""
    [line] = done.stderr.decode().splitlines()
    assert "is not a service name" in line and not acting_characters(line)


# --- envelopes through the real fetcher stage ---
not_json = st.one_of(st.text(max_size=50).map(on_the_wire), st.sampled_from(["<html>502</html>", "{", "[" * 5000]))
wrong_shapes = json_values.map(lambda value: json.dumps({"data": {"count": value}}))
not_objects = st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()), min_size=1).map(
    lambda values: json.dumps({"data": values})
)
bad_envelopes = st.one_of(not_json, wrong_shapes, not_objects)
bad_has_more = st.text(max_size=10).map(on_the_wire).filter(lambda v: v.lower() not in ("true", "false"))
GOOD = json.dumps({"data": [{"id": "ok-1", "title": "served after the bad ones"}]})


@given(
    st.lists(
        st.one_of(bad_envelopes.map(lambda e: (e, {})), bad_has_more.map(lambda v: (GOOD, {"has_more": v}))),
        min_size=1,
    )
)
@settings(
    max_examples=ENVELOPE_CASES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example([("not json", {}), ('{"data": 5}', {}), ('{"data": [1]}', {}), (GOOD, {"has_more": "yes"})])
async def test_bad_envelopes_fail_their_runs_and_the_fetcher_serves_the_next(
    settings: Settings, answers: list[tuple[str, dict[str, str]]]
) -> None:
    app = App(settings.model_copy(update={"kafka_topic_prefix": f"e{uuid.uuid4().hex[:10]}."}))
    await app.ensure_topics()
    script = [*answers[:4], (GOOD, {"has_more": "false"})]
    async with (
        app.ledger() as ledger,
        scripted_coordinator(script) as (endpoint, _),
        fetcher_running(app, endpoint) as fetcher,
    ):
        failed = []
        for _ in script[:-1]:  # one at a time: the scripted Coordinator answers its calls in order
            request = await request_sync(app, "fuzz-service")
            failed += await ledger.wait([request.run_id], 60, guard=[fetcher])
        last = await request_sync(app, "fuzz-service")
        async with asyncio.timeout(60):  # every page fetched: the fetcher served it (no embedder runs here)
            while (served := ledger.book.get(last.run_id)) is None or not served.fetch_done:
                await asyncio.sleep(0.05)
    for run in failed:
        assert run.status == "failed" and run.error and run.error.startswith("fuzz-service page 1: "), run
    assert (served.status, served.items_fetched) == ("embedding", 1)
