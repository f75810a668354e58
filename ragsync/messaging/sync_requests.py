"""Publishing sync requests: one per service, keyed by tenant/service so a service's requests stay in order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ragsync.events import RunQueued, SyncType, TenantRequest, Trigger
from ragsync.keys import request_key
from ragsync.messaging.kafka import Publisher
from ragsync.messaging.topics import Topics
from ragsync.operations import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RequestDefaults:
    """What a sync request gets when it does not say: the services (BATCH_SYNC_SERVICES), the tenant
    (DEFAULT_TENANT_ID) and the records per page (BATCH_SYNC_LIMIT)."""

    services: tuple[str, ...]
    tenant_id: str = "default-tenant"
    limit: int = 1000


class AdminSync(BaseModel):
    """The body of `POST /admin/sync`, every field optional: which of the configured services to sync (default:
    all), the kind of sync, the tenant, and for incremental syncs the time since when. Validate it with `parse`,
    which knows the configured services."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A list, never a string: pydantic refuses "payment-service" here instead of syncing one service per letter.
    services: list[str] | None = None
    sync_type: SyncType = "batch"
    tenant_id: str | None = Field(None, min_length=1, max_length=200)
    since: datetime | None = None

    @classmethod
    def parse(cls, body: bytes, configured: Sequence[str]) -> AdminSync:
        """The body (empty: `{}`) as an order for `configured` services; `ValidationError` naming each bad field
        and its value."""
        text = body.decode("utf-8", errors="replace")  # as text, so that an unreadable body is echoed as text
        return cls.model_validate_json(text if text.strip() else "{}", context={"configured": tuple(configured)})

    @field_validator("services")
    @classmethod
    def _configured(cls, services: list[str] | None, info: ValidationInfo) -> list[str] | None:
        """Only configured services, each at most once: a request names what the operators set up, and a list
        cannot ask for more syncs than there are services."""
        configured: tuple[str, ...] = (info.context or {}).get("configured", ())
        if services is None:
            return None
        if len(services) > len(configured):
            raise ValueError(f"names {len(services)} services; BATCH_SYNC_SERVICES has {len(configured)}")
        unknown = [service for service in services if service not in configured]
        if unknown:
            raise ValueError(
                f"not configured: {', '.join(map(repr, unknown))} (BATCH_SYNC_SERVICES: {', '.join(configured)})"
            )
        if len(services) > len(set(services)):
            raise ValueError("names a service more than once")
        return services


def sync_requests(
    defaults: RequestDefaults,
    services: list[str] | None,
    trigger: Trigger,
    sync_type: SyncType = "batch",
    since: datetime | None = None,
    tenant_id: str | None = None,
) -> list[TenantRequest]:
    """One request per service (the default services when none are named)."""
    return [
        TenantRequest(
            tenant_id=tenant_id or defaults.tenant_id,
            service=service,
            sync_type=sync_type,
            since=since,
            limit=defaults.limit,
            trigger=trigger,
        )
        for service in (services or defaults.services)
    ]


async def publish_requests(publisher: Publisher, topics: Topics, requests: Sequence[TenantRequest]) -> None:
    """Publish, with a "queued" notice per run, and wait until the broker has every one.

    The notice makes a request that never reaches a fetcher visible (and the watchdog re-requests it).
    """
    for request in requests:
        await publisher.send(topics.sync_requests, request_key(request.tenant_id, request.service), request)
        queued = RunQueued(run_id=request.run_id, tenant_id=request.tenant_id, service=request.service, request=request)
        await publisher.send(topics.sync_runs, queued.key, queued)
        metrics.SYNC_REQUESTS.labels(request.trigger).inc()
    await publisher.flush()
    for request in requests:
        log.info(
            "requested %s sync of %s (run %s, trigger %s)",
            request.sync_type,
            request.service,
            request.run_id,
            request.trigger,
        )
