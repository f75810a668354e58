"""A real gRPC server implementing the Coordinator contract over the synthetic demo records.

Each demo service answers in a different envelope shape, two send `has_more` and two rely on short pages,
so the client's parser and paging are exercised end to end. Latency and errors can be injected, and so can the
wrong answers an upstream gives without an error (`WrongAnswer`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc

from ragsync.coordinator.signing import SERVICE_NAME, Verifier, signed_message
from ragsync.coordinator.tls import ChannelTls
from ragsync.demo.records import GENERATORS, Generator, demo_record, demo_updated_at
from ragsync.proto import coordinator_pb2, coordinator_pb2_grpc

log = logging.getLogger(__name__)
QUERY_TEXT = re.compile(r"^sync_(?P<service>.+)_(?P<sync_type>batch|daily|incremental)_page_(?P<page>\d+)$")


@dataclass
class Faults:
    """Faults to inject: a fixed latency, the first N calls failing, and a share of calls failing at random."""

    latency_s: float = 0.0
    fail_first: int = 0
    error_rate: float = 0.0
    error_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    seed: int = 7
    injected: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def should_fail(self, call_number: int) -> bool:
        """Whether call number `call_number` (1-based) fails; counts the faults injected."""
        fail = call_number <= self.fail_first or self._rng.random() < self.error_rate
        self.injected += fail
        return fail


WRONG_ANSWERS = ("empty", "cut-short", "all-deleted")


@dataclass(frozen=True)
class WrongAnswer:
    """An upstream that answers wrongly, without an error: `empty` answers every page with no records, `cut-short`
    stops listing after page `cut_after` (has_more false there, nothing after), `all-deleted` flags every record
    deleted."""

    kind: str
    cut_after: int = 2

    def __post_init__(self) -> None:
        if self.kind not in WRONG_ANSWERS:
            raise ValueError(f"wrong answer {self.kind!r}: use {', '.join(WRONG_ANSWERS)}")

    def listed(self, page: int) -> bool:
        """Whether `page` lists its records at all."""
        return self.kind != "empty" and not (self.kind == "cut-short" and page > self.cut_after)

    def last(self, page: int) -> bool:
        """Whether `page` says it is the last."""
        return self.kind == "empty" or (self.kind == "cut-short" and page >= self.cut_after)


@dataclass(frozen=True)
class ReceivedCall:
    """A call as it reached the server: the request and its headers."""

    request: coordinator_pb2.RouteRequest
    headers: dict[str, str]


def _envelope(service: str, records: list[dict[str, Any]], page: int) -> dict[str, Any] | list[Any]:
    shapes: dict[str, dict[str, Any]] = {
        "payment-service": {"success": True, "payload": {"data": records, "page": page}},
        "assessment-service": {"data": {"items": records, "page": page}},
        "devlab-service": {"status": "ok", "data": records},
        "analytics-service": {"successfulResult": {"service": service, "data": records}},
    }
    if service in shapes:
        return shapes[service]
    return {"data": records}  # any other service: the plainest shape


class DemoCoordinator(coordinator_pb2_grpc.CoordinatorServiceServicer):
    """The `Route` handler: pages of deterministic records per service, honouring page, limit and since. The demo's
    services, and those of `generators` beside them (a benchmark's own shapes of records)."""

    SENDS_HAS_MORE = frozenset({"payment-service", "assessment-service"})

    def __init__(
        self,
        items_per_service: int = 200,
        faults: Faults | None = None,
        verifier: Verifier | None = None,
        wrong: WrongAnswer | None = None,
        generators: Mapping[str, Generator] | None = None,
    ) -> None:
        self.items_per_service = items_per_service
        self.generators = {**GENERATORS, **(generators or {})}
        self.faults = faults or Faults()
        self.wrong = wrong
        self.verifier = verifier
        self.calls: list[ReceivedCall] = []
        self._revisions: dict[tuple[str, int], tuple[int, datetime]] = {}
        self._removed: set[tuple[str, int]] = set()
        self._tombstones: dict[tuple[str, int], datetime] = {}
        # The listing of the last (service, since) asked for, until a record changes: a sync of N records asks
        # for N/limit pages of one listing, and building it for each page cost O(N) a page, O(N^2) a sync.
        self._listing: tuple[tuple[str, datetime | None, int], list[int]] | None = None

    def change(self, service: str, indices: list[int]) -> None:
        """Records `indices` of `service` change upstream now (new content, new `updated_at`)."""
        for index in indices:
            revision = self._revisions.get((service, index), (0, datetime.now(UTC)))[0] + 1
            self._revisions[(service, index)] = (revision, datetime.now(UTC))
        self._listing = None

    def revision(self, service: str, index: int) -> int:
        """How many times record `index` of `service` changed."""
        return self._revisions.get((service, index), (0, None))[0]

    def remove(self, service: str, indices: list[int]) -> None:
        """Records disappear from the listing (as a hard delete upstream looks to a full sync)."""
        self._removed.update((service, index) for index in indices)
        self._listing = None

    def tombstone(self, service: str, indices: list[int]) -> None:
        """Records are listed as deleted (`deleted: true`), as a soft delete upstream looks."""
        self._tombstones.update({(service, index): datetime.now(UTC) for index in indices})
        self._listing = None

    def _listed(self, service: str, since: datetime | None) -> list[int]:
        """Indices of the records listed, in order; cheap, so a page generates only its own records."""
        asked = (service, since, self.items_per_service)
        if self._listing is None or self._listing[0] != asked:
            listed = [
                index
                for index in range(self.items_per_service)
                if (service, index) not in self._removed and (since is None or self._updated_at(service, index) > since)
            ]
            self._listing = (asked, listed)
        return self._listing[1]

    def _updated_at(self, service: str, index: int) -> datetime:
        if (service, index) in self._tombstones:
            return self._tombstones[(service, index)]
        revision, changed_at = self._revisions.get((service, index), (0, None))
        return changed_at or demo_updated_at(index, revision)

    def _record(self, service: str, index: int) -> dict[str, Any]:
        record = demo_record(service, index, self.revision(service, index), self.generators)
        record["updated_at"] = self._updated_at(service, index).isoformat()
        if (service, index) in self._tombstones or (self.wrong and self.wrong.kind == "all-deleted"):
            record["deleted"] = True
        return record

    async def Route(
        self, request: coordinator_pb2.RouteRequest, context: grpc.aio.ServicerContext
    ) -> coordinator_pb2.RouteResponse:
        headers = {key: value for key, value in context.invocation_metadata() or ()}
        self.calls.append(ReceivedCall(request=request, headers=headers))
        if self.faults.latency_s:
            await asyncio.sleep(self.faults.latency_s)
        if self.faults.should_fail(len(self.calls)):
            await context.abort(self.faults.error_code, "injected fault")
        if self.verifier is not None:
            await self._check_signature(request, headers, context)
        service, page, limit, since = await self._parse(request, context)
        return self._page(service, page, limit, since)

    async def _check_signature(
        self, request: coordinator_pb2.RouteRequest, headers: dict[str, str], context: grpc.aio.ServicerContext
    ) -> None:
        assert self.verifier is not None
        signature, timestamp = headers.get("x-signature"), headers.get("x-timestamp", "")
        if signature is None or not timestamp.isdigit() or headers.get("x-service-name") != SERVICE_NAME:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing x-signature, x-timestamp or x-service-name")
        message = signed_message(request.tenant_id, request.user_id, request.query_text, int(timestamp))
        if not self.verifier.verify(signature or "", message):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "signature does not verify")

    async def _parse(
        self, request: coordinator_pb2.RouteRequest, context: grpc.aio.ServicerContext
    ) -> tuple[str, int, int, datetime | None]:
        meta = dict(request.metadata)
        match = QUERY_TEXT.match(request.query_text)
        service = meta.get("target_service") or (match.group("service") if match else "")
        if service not in self.generators:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no such service: {service!r}")
        try:
            page, limit = int(meta.get("page", "1")), int(meta.get("limit", "1000"))
            since = datetime.fromisoformat(meta["since"]) if meta.get("since") else None
        except ValueError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad page, limit or since: {error}")
        if page < 1 or limit < 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page {page} and limit {limit} must be >= 1")
        return service, page, limit, since

    def _page(self, service: str, page: int, limit: int, since: datetime | None) -> coordinator_pb2.RouteResponse:
        listed = self._listed(service, since) if self.wrong is None or self.wrong.listed(page) else []
        start = (page - 1) * limit
        chunk = [self._record(service, index) for index in listed[start : start + limit]]
        fields = {"successful_service": service, "rank_used": "1", "quality_score": "0.97", "total_attempts": "1"}
        if service in self.SENDS_HAS_MORE:
            last = start + limit >= len(listed) or (self.wrong is not None and self.wrong.last(page))
            fields["has_more"] = "false" if last else "true"
        return coordinator_pb2.RouteResponse(
            target_services=[service],
            normalized_fields=fields,
            envelope_json=json.dumps(_envelope(service, chunk, page)),
            routing_metadata=json.dumps({"routed_to": service, "page": page}),
        )


class CoordinatorServer:
    """Runs a `DemoCoordinator` on a port. Use as an async context manager."""

    def __init__(self, servicer: DemoCoordinator, address: str = "127.0.0.1:0", tls: ChannelTls | None = None) -> None:
        self.servicer = servicer
        self._address = address
        self._tls = tls
        self._server = grpc.aio.server()
        coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(servicer, self._server)
        self.port = 0

    @property
    def endpoint(self) -> str:
        """host:port for clients."""
        host = self._address.rsplit(":", 1)[0]
        return f"{host if host not in ('0.0.0.0', '[::]') else '127.0.0.1'}:{self.port}"

    async def start(self) -> None:
        """Bind and serve."""
        if self._tls is None:
            self.port = self._server.add_insecure_port(self._address)
        else:
            self.port = self._server.add_secure_port(self._address, self._tls.server_credentials())
        await self._server.start()
        mode = "plaintext" if self._tls is None else "TLS" if self._tls.ca is None else "mutual TLS"
        log.info("demo Coordinator listening on %s (%s)", self.endpoint, mode)

    async def stop(self) -> None:
        """Stop serving (in-flight calls get a second to finish)."""
        await self._server.stop(grace=1.0)

    async def wait(self) -> None:
        """Serve until stopped."""
        await self._server.wait_for_termination()

    async def __aenter__(self) -> CoordinatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
