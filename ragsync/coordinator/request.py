"""Building the batch-sync page request exactly as the Coordinator contract lays it out."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from ragsync.coordinator.signing import SERVICE_NAME
from ragsync.proto import coordinator_pb2

REQUEST_SOURCE = "rag-batch-sync"
# The metadata key naming the tenant whose records a request is for, when it names one: a Coordinator that scopes
# by it answers only that tenant's records (ragsync dead-letters any record of another tenant all the same).
TENANT_SCOPE_KEY = "for_tenant_id"


@dataclass(frozen=True, kw_only=True)
class CallerIdentity:
    """Who the calls are made as (`tenant_id` / `user_id` of every RouteRequest)."""

    tenant_id: str = "rag-system"
    user_id: str = "system"


def iso_now() -> str:
    """ISO-8601 UTC with milliseconds and a Z, as Node's `Date.toISOString()` writes it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def page_query_text(service: str, sync_type: str, page: int) -> str:
    """`sync_{target_service}_{sync_type}_page_{page}`."""
    return f"sync_{service}_{sync_type}_page_{page}"


def page_request(
    identity: CallerIdentity,
    service: str,
    sync_type: str,
    page: int,
    limit: int,
    since: str | None = None,
    tenant: str | None = None,
) -> coordinator_pb2.RouteRequest:
    """The RouteRequest for one page, with its metadata and universal envelope; `tenant`: the tenant whose records
    the request is for (TENANT_SCOPE_KEY), unset for the whole service."""
    query_text = page_query_text(service, sync_type, page)
    now = iso_now()
    metadata = {
        "target_service": service,
        "sync_type": sync_type,
        "page": str(page),
        "limit": str(limit),
        "requester_service": SERVICE_NAME,
        "source": REQUEST_SOURCE,
        "timestamp": now,
    }
    if since is not None:
        metadata["since"] = since
    if tenant is not None:
        metadata[TENANT_SCOPE_KEY] = tenant
    envelope = {
        "version": "1.0",
        "timestamp": now,
        "request_id": str(uuid.uuid4()),
        "tenant_id": identity.tenant_id,
        "user_id": identity.user_id,
        "source": SERVICE_NAME,
        "payload": {"query_text": query_text, "metadata": dict(metadata)},
    }
    metadata["envelope_json"] = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
    return coordinator_pb2.RouteRequest(
        tenant_id=identity.tenant_id, user_id=identity.user_id, query_text=query_text, metadata=metadata
    )
