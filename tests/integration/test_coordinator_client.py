"""The Coordinator client against real gRPC servers: the demo Coordinator and a scripted one."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ragsync.coordinator import (
    BadPageError,
    CoordinatorClient,
    CoordinatorError,
    CoordinatorOptions,
    PagingError,
    Signer,
    iterate_pages,
)
from ragsync.coordinator.paging import Page, PageQuery
from ragsync.coordinator.request import CallerIdentity
from ragsync.coordinator.signing import canonical_payload
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator, Faults
from tests.integration.conftest import scripted_coordinator

IDENTITY = CallerIdentity()


async def _pages(client: CoordinatorClient, query: PageQuery, max_pages: int = 100) -> list[Page]:
    return [page async for page in iterate_pages(client, IDENTITY, query, 10.0, max_pages)]


def _client(endpoint: str, signer: Signer | None = None, attempts: int = 5) -> CoordinatorClient:
    options = CoordinatorOptions(endpoint=endpoint, max_attempts=attempts, backoff_initial=0.01, backoff_max=0.05)
    return CoordinatorClient(options, signer)


@pytest.fixture
async def demo() -> AsyncIterator[CoordinatorServer]:
    async with CoordinatorServer(DemoCoordinator(items_per_service=25)) as server:
        yield server


async def test_request_on_the_wire_is_the_contract_and_signature_verifies() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    signer = Signer.from_env_value(base64.b64encode(pem).decode())
    async with (
        CoordinatorServer(DemoCoordinator(items_per_service=5)) as server,
        _client(server.endpoint, signer) as client,
    ):
        pages = await _pages(client, PageQuery("payment-service", limit=10))
    assert [len(p.records) for p in pages] == [5]
    call = server.servicer.calls[0]
    request, headers = call.request, call.headers
    assert (request.tenant_id, request.user_id) == ("rag-system", "system")
    assert request.query_text == "sync_payment-service_batch_page_1"
    assert dict(request.metadata)["target_service"] == "payment-service"
    assert dict(request.metadata)["limit"] == "10"
    assert headers["x-service-name"] == "rag-service" and headers["x-requester-service"] == "rag-service"
    assert headers["x-timestamp"].isdigit() and len(headers["x-timestamp"]) == 13
    # Verify as the Coordinator does, with nothing from ragsync but the wire data.
    signed = {
        "tenant_id": request.tenant_id,
        "user_id": request.user_id,
        "query_text": request.query_text,
        "requester_service": "rag-service",
        "timestamp": int(headers["x-timestamp"]),
    }
    digest = __import__("hashlib").sha256(json.dumps(signed, separators=(",", ":")).encode()).hexdigest()
    message = f"educoreai-rag-service-{digest}".encode()
    assert canonical_payload(
        request.tenant_id, request.user_id, request.query_text, int(headers["x-timestamp"])
    ) == json.dumps(signed, separators=(",", ":"))
    key.public_key().verify(base64.b64decode(headers["x-signature"]), message, ec.ECDSA(hashes.SHA256()))


async def test_unsigned_calls_carry_no_signature(demo: CoordinatorServer) -> None:
    async with _client(demo.endpoint) as client:
        await _pages(client, PageQuery("devlab-service", limit=100))
    assert "x-signature" not in demo.servicer.calls[0].headers


async def test_has_more_pages_through_every_record(demo: CoordinatorServer) -> None:
    async with _client(demo.endpoint) as client:
        pages = await _pages(client, PageQuery("payment-service", limit=10))
    assert [(p.number, len(p.records), p.has_more) for p in pages] == [(1, 10, True), (2, 10, True), (3, 5, False)]


async def test_without_has_more_a_short_page_is_the_last(demo: CoordinatorServer) -> None:
    async with _client(demo.endpoint) as client:
        pages = await _pages(client, PageQuery("devlab-service", limit=10))
    assert [len(p.records) for p in pages] == [10, 10, 5]
    assert all("has_more" not in c.request.metadata for c in demo.servicer.calls)


async def test_without_has_more_an_exact_multiple_ends_on_an_empty_page() -> None:
    async with CoordinatorServer(DemoCoordinator(items_per_service=20)) as server, _client(server.endpoint) as c:
        pages = await _pages(c, PageQuery("analytics-service", limit=10))
    assert [len(p.records) for p in pages] == [10, 10, 0]


async def test_unavailable_twice_then_success_is_one_page() -> None:
    async with CoordinatorServer(DemoCoordinator(5, Faults(fail_first=2))) as server, _client(server.endpoint) as c:
        pages = await _pages(c, PageQuery("payment-service", limit=10))
    assert len(pages) == 1 and len(pages[0].records) == 5
    assert len(server.servicer.calls) == 3


async def test_invalid_argument_is_not_retried() -> None:
    faults = Faults(fail_first=1, error_code=grpc.StatusCode.INVALID_ARGUMENT)
    async with CoordinatorServer(DemoCoordinator(5, faults)) as server, _client(server.endpoint) as client:
        with pytest.raises(CoordinatorError) as raised:
            await _pages(client, PageQuery("payment-service"))
    assert len(server.servicer.calls) == 1
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "payment-service page 1" in str(raised.value) and "not retryable" in str(raised.value)


async def test_retries_exhausted_names_service_page_and_code() -> None:
    async with (
        CoordinatorServer(DemoCoordinator(5, Faults(fail_first=99))) as server,
        _client(server.endpoint, attempts=3) as client,
    ):
        with pytest.raises(CoordinatorError, match=r"assessment-service page 1: .*UNAVAILABLE after 3 attempts"):
            await _pages(client, PageQuery("assessment-service"))
    assert len(server.servicer.calls) == 3


async def test_unknown_service_is_not_found_without_retry(demo: CoordinatorServer) -> None:
    async with _client(demo.endpoint) as client:
        with pytest.raises(CoordinatorError, match="NOT_FOUND"):
            await _pages(client, PageQuery("nope-service"))
    assert len(demo.servicer.calls) == 1


async def test_server_down_is_unavailable_after_retries() -> None:
    from ragsync.messaging.local_broker import free_port

    async with _client(f"127.0.0.1:{free_port()}", attempts=2) as client:
        with pytest.raises(CoordinatorError, match="UNAVAILABLE after 2 attempts"):
            await _pages(client, PageQuery("payment-service"))


async def _scripted(answers: list[tuple[str, dict[str, str]]], query: PageQuery, max_pages: int = 100) -> list[Page]:
    async with scripted_coordinator(answers) as (endpoint, _), _client(endpoint) as client:
        return await _pages(client, query, max_pages)


@pytest.mark.parametrize(
    "shape",
    [
        lambda r: {"payload": {"data": r}},
        lambda r: {"data": {"items": r}},
        lambda r: {"data": r},
        lambda r: {"successfulResult": {"data": r}},
        lambda r: r,
    ],
    ids=["payload.data", "data.items", "data", "successfulResult.data", "list"],
)
async def test_each_envelope_shape_over_the_wire(shape: object) -> None:
    records = [{"id": i} for i in range(3)]
    pages = await _scripted([(json.dumps(shape(records)), {})], PageQuery("s", limit=10))  # type: ignore[operator]
    assert pages[0].records == records


async def test_a_repeated_page_stops_with_an_error() -> None:
    page = json.dumps({"data": [{"id": 1}, {"id": 2}]})
    with pytest.raises(PagingError, match="s page 2: identical to page 1"):
        await _scripted([(page, {"has_more": "true"})], PageQuery("s", limit=2))


async def test_page_count_past_the_maximum_stops_with_an_error() -> None:
    answers = [(json.dumps({"data": [{"id": i}]}), {"has_more": "true"}) for i in range(10)]
    with pytest.raises(PagingError, match="more than 3 pages"):
        await _scripted(answers, PageQuery("s", limit=1), max_pages=3)


async def test_bad_envelope_is_an_error_not_the_end() -> None:
    with pytest.raises(BadPageError, match="s page 1: bad envelope: not JSON"):
        await _scripted([("Service Unavailable", {})], PageQuery("s"))


async def test_unreadable_has_more_is_an_error() -> None:
    with pytest.raises(PagingError, match="has_more is 'maybe'"):
        await _scripted([(json.dumps({"data": [{"id": 1}]}), {"has_more": "maybe"})], PageQuery("s"))
