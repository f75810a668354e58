"""Paging through one service's records: `has_more`, then short page, guarded against endless loops."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ragsync.coordinator.client import CoordinatorClient
from ragsync.coordinator.envelope import records_from_envelope
from ragsync.coordinator.request import CallerIdentity, page_request


class PagingError(RuntimeError):
    """Paging cannot go on safely (a repeated page, too many pages, an unreadable `has_more`)."""


@dataclass(frozen=True)
class PageQuery:
    """What to fetch: one service, one kind of sync."""

    service: str
    sync_type: str = "batch"
    limit: int = 1000
    since: datetime | None = None
    first_page: int = 1


@dataclass(frozen=True)
class Page:
    """One page of records."""

    number: int
    records: list[dict[str, Any]]
    has_more: bool
    why_last: str = ""  # on the last page: what the Coordinator's answer said to stop

    def describe(self) -> str:
        """The page as the Coordinator answered it, for a person."""
        return f"page {self.number}: {len(self.records)} records" + (f", {self.why_last}" if self.why_last else "")


def _has_more(fields: dict[str, str], record_count: int, limit: int, service: str, page: int) -> bool:
    value = fields.get("has_more")
    if value is None:
        return record_count >= limit
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise PagingError(f"{service} page {page}: normalized_fields.has_more is {value!r}, expected 'true' or 'false'")


def _digest(records: list[dict[str, Any]]) -> str:
    # The records, not the envelope text: an envelope may echo a fresh request id or timestamp on every call.
    text = json.dumps(records, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


async def iterate_pages(
    client: CoordinatorClient,
    identity: CallerIdentity,
    query: PageQuery,
    timeout: float,
    max_pages: int,
) -> AsyncIterator[Page]:
    """Yield each page until the last one; raises on a bad page instead of ending early."""
    since = query.since.isoformat().replace("+00:00", "Z") if query.since else None
    previous_digest: str | None = None
    number = query.first_page
    while True:
        if number > max_pages:
            raise PagingError(f"{query.service}: more than {max_pages} pages (COORDINATOR_MAX_PAGES); stopped")
        request = page_request(identity, query.service, query.sync_type, number, query.limit, since)
        response = await client.route(request, timeout, query.service, number)
        records = records_from_envelope(response.envelope_json, query.service, number)
        digest = _digest(records)
        if digest == previous_digest:
            raise PagingError(
                f"{query.service} page {number}: identical to page {number - 1}; the Coordinator ignores `page`"
            )
        fields = dict(response.normalized_fields)
        more = _has_more(fields, len(records), query.limit, query.service, number)
        why_last = "" if more else "has_more false" if "has_more" in fields else f"fewer than the limit {query.limit}"
        yield Page(number=number, records=records, has_more=more, why_last=why_last)
        if not more:
            return
        previous_digest = digest
        number += 1
