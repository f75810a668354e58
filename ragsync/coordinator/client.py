"""The Coordinator's gRPC client: signed calls, deadlines, retries with backoff on the retryable codes only."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import grpc
from tenacity import AsyncRetrying, RetryError, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from ragsync.coordinator.coordinator_errors import CoordinatorError
from ragsync.coordinator.signing import SERVICE_NAME, Signer, signed_message
from ragsync.coordinator.tls import ChannelTls
from ragsync.operations import metrics
from ragsync.proto import coordinator_pb2, coordinator_pb2_grpc
from ragsync.settings import DEFAULT_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


# A certificate refused stays refused: failing at once names the setting sooner than five attempts would.
TLS_REFUSALS = ("CERTIFICATE_VERIFY_FAILED", "Hostname Verification")
# gRPC's RESOURCE_EXHAUSTED for an answer over the channel's receive limit: the same page is as large next time.
OVER_LIMIT = "larger than max"


def _is_retryable(error: BaseException) -> bool:
    if not isinstance(error, grpc.aio.AioRpcError) or error.code() not in RETRYABLE_CODES:
        return False
    return not any(refusal in (error.details() or "") for refusal in (*TLS_REFUSALS, OVER_LIMIT))


def tls_hint(detail: str, tls: ChannelTls | None) -> str:
    """What to change when a call failed on the channel's TLS (empty when it did not)."""
    if "CERTIFICATE_VERIFY_FAILED" in detail:
        return "the Coordinator's certificate was refused: set COORDINATOR_TLS_CA to the CA that signed it"
    if "Hostname Verification" in detail:
        return "the Coordinator's certificate is not for this host: use a name it holds in COORDINATOR_GRPC_ENDPOINT"
    if "Socket closed" in detail and tls is None:
        return "if the Coordinator serves TLS, set COORDINATOR_TLS_CA"
    if "Socket closed" in detail and tls is not None and tls.cert is None:
        return "if the Coordinator requires client certificates, set COORDINATOR_TLS_CERT and COORDINATOR_TLS_KEY"
    return ""


def size_hint(detail: str, max_message_bytes: int) -> str:
    """What to change when an answer was over the receive limit (empty when it was not)."""
    if OVER_LIMIT not in detail:
        return ""
    return (
        f"the page is over COORDINATOR_MAX_MESSAGE_BYTES={max_message_bytes}: lower the records per page "
        "(BATCH_SYNC_LIMIT, or the request's limit), or raise COORDINATOR_MAX_MESSAGE_BYTES together with the "
        "fetcher's memory limit"
    )


@dataclass(frozen=True, kw_only=True)
class CoordinatorOptions:
    """Where the Coordinator answers and how it is called: attempts and their backoff on retryable codes, the
    largest answer taken (it also bounds the fetcher's memory), and the channel's TLS (None: plaintext)."""

    endpoint: str
    max_attempts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    tls: ChannelTls | None = None


class CoordinatorClient:
    """Calls `Route` on the Coordinator. Use as an async context manager, or `close()` when done."""

    def __init__(self, options: CoordinatorOptions, signer: Signer | None = None) -> None:
        endpoint, tls, max_message_bytes = options.endpoint, options.tls, options.max_message_bytes
        self.endpoint = endpoint
        self.tls = tls
        self.max_message_bytes = max_message_bytes
        self._signer = signer
        self._max_attempts = options.max_attempts
        self._backoff_initial = options.backoff_initial
        self._backoff_max = options.backoff_max
        # A page of 1000 records easily passes gRPC's 4 MB default; such a page must not fail for its size. The
        # limit also bounds the fetcher's memory: gRPC refuses a larger answer before holding it, and every page in
        # flight is parsed whole.
        limits = [("grpc.max_receive_message_length", max_message_bytes)]
        if tls is None:
            self._channel = grpc.aio.insecure_channel(endpoint, options=limits)
        else:
            self._channel = grpc.aio.secure_channel(endpoint, tls.client_credentials(), options=limits)
        self._stub = coordinator_pb2_grpc.CoordinatorServiceStub(self._channel)

    async def __aenter__(self) -> CoordinatorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    def connectivity(self) -> grpc.ChannelConnectivity:
        """The channel's state (asks it to connect if idle)."""
        state: grpc.ChannelConnectivity = self._channel.get_state(try_to_connect=True)
        return state

    def call_metadata(self, request: coordinator_pb2.RouteRequest) -> list[tuple[str, str]]:
        """The gRPC headers of one call: service identity and, with a key, the signature."""
        timestamp_ms = int(time.time() * 1000)
        headers = [
            ("x-service-name", SERVICE_NAME),
            ("x-timestamp", str(timestamp_ms)),
            ("x-requester-service", SERVICE_NAME),
        ]
        if self._signer is not None:
            message = signed_message(request.tenant_id, request.user_id, request.query_text, timestamp_ms)
            headers.insert(0, ("x-signature", self._signer.sign(message)))
        return headers

    async def route(
        self, request: coordinator_pb2.RouteRequest, timeout: float, service: str, page: int
    ) -> coordinator_pb2.RouteResponse:
        """One `Route` call, retried with exponential backoff and jitter on retryable codes."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_exponential_jitter(initial=self._backoff_initial, max=self._backoff_max),
            retry=retry_if_exception(_is_retryable),
            before_sleep=lambda state: log.warning(
                "%s page %d: attempt %d failed (%s); retrying",
                service,
                page,
                state.attempt_number,
                state.outcome.exception() if state.outcome else "?",
            ),
            reraise=False,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._call(request, timeout, service)
        except RetryError as error:
            last = error.last_attempt.exception()
            raise self._error(last, service, page, self._max_attempts) from last
        except grpc.aio.AioRpcError as error:
            raise self._error(error, service, page, 1) from error
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _call(
        self, request: coordinator_pb2.RouteRequest, timeout: float, service: str
    ) -> coordinator_pb2.RouteResponse:
        # Each attempt is signed afresh: the signature covers the call's own timestamp.
        code = "OK"
        try:
            with metrics.COORDINATOR_SECONDS.labels(metrics.service_label(service)).time():
                response: coordinator_pb2.RouteResponse = await self._stub.Route(
                    request, timeout=timeout, metadata=self.call_metadata(request)
                )
        except grpc.aio.AioRpcError as error:
            code = error.code().name
            raise
        finally:
            metrics.COORDINATOR_CALLS.labels(metrics.service_label(service), code).inc()
        return response

    def _error(self, error: BaseException | None, service: str, page: int, attempts: int) -> CoordinatorError:
        if isinstance(error, grpc.aio.AioRpcError):
            detail = error.details() or ""
            hint = tls_hint(detail, self.tls) or size_hint(detail, self.max_message_bytes)
            return CoordinatorError(service, page, error.code(), f"{detail} ({hint})" if hint else detail, attempts)
        return CoordinatorError(service, page, None, repr(error), attempts)
