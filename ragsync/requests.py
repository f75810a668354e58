"""Publishing sync requests: one per service, keyed by tenant/service so a service's requests stay in order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ragsync import metrics
from ragsync.events import RunQueued, SyncType, TenantRequest, Trigger
from ragsync.kafka import Publisher
from ragsync.keys import request_key
from ragsync.settings import Settings
from ragsync.topics import Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestDefaults:
    """What a sync request gets when it does not say: the services (BATCH_SYNC_SERVICES), the tenant
    (DEFAULT_TENANT_ID) and the records per page (BATCH_SYNC_LIMIT)."""

    services: tuple[str, ...]
    tenant_id: str = "default-tenant"
    limit: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestDefaults:
        """BATCH_SYNC_SERVICES, DEFAULT_TENANT_ID and BATCH_SYNC_LIMIT."""
        return cls(tuple(settings.batch_sync_services), settings.default_tenant_id, settings.batch_sync_limit)


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
