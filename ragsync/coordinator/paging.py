"""Paging through one service's records: `has_more`, then short page, guarded against endless loops."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ragsync.coordinator.client import CoordinatorClient
from ragsync.coordinator.coordinator_errors import PagingError
from ragsync.coordinator.envelope import records_from_envelope
from ragsync.coordinator.request import CallerIdentity, page_request


@dataclass(frozen=True)
class PageQuery:
    """What to fetch: one service, one kind of sync."""

    service: str
    sync_type: str = "batch"
    limit: int = 1000
    since: datetime | None = None
    first_page: int = 1
    tenant: str | None = None  # the tenant whose records are asked for; None: the whole service


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
    # The records, not the envelope text: an envelope may echo a fresh request id or timestamp on every call. One
    # record at a time, so that the page is never held twice more as one text and its bytes (the page's peak was
    # 8-10 times its JSON, 3-4 with this); a record's JSON holds no raw newline, so the newlines keep them apart.
    digest = hashlib.sha256()
    for record in records:
        text = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
        digest.update(text.encode("utf-8", errors="surrogatepass") + b"\n")
    return digest.hexdigest()


async def iterate_pages(
    client: CoordinatorClient,
    identity: CallerIdentity,
    query: PageQuery,
    timeout: float,
    max_pages: int,
) -> AsyncIterator[Page]:
    """Yield each page until the last one; raises on a bad page instead of ending early."""
    previous_digest: str | None = None
    number = query.first_page
    while True:
        if number > max_pages:
            raise PagingError(f"{query.service}: more than {max_pages} pages (COORDINATOR_MAX_PAGES); stopped")
        page, digest = await _fetch_page(client, identity, query, number, timeout)
        if digest == previous_digest:
            raise PagingError(
                f"{query.service} page {number}: identical to page {number - 1}; the Coordinator ignores `page`"
            )
        yield page
        if not page.has_more:
            return
        del page  # before the next call: a run holds one page at a time, not the last one beside the next
        previous_digest = digest
        number += 1


async def _fetch_page(
    client: CoordinatorClient, identity: CallerIdentity, query: PageQuery, number: int, timeout: float
) -> tuple[Page, str]:
    """Page `number` and its digest; the answer and its text are let go once parsed."""
    since = query.since.isoformat().replace("+00:00", "Z") if query.since else None
    request = page_request(identity, query.service, query.sync_type, number, query.limit, since, query.tenant)
    response = await client.route(request, timeout, query.service, number)
    records = records_from_envelope(response.envelope_json, query.service, number)
    fields = dict(response.normalized_fields)
    more = _has_more(fields, len(records), query.limit, query.service, number)
    why_last = "" if more else "has_more false" if "has_more" in fields else f"fewer than the limit {query.limit}"
    return Page(number=number, records=records, has_more=more, why_last=why_last), _digest(records)
