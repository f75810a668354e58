"""Every key ragsync writes to Kafka, built (and for the run state, parsed) in one place.

Sync requests are keyed `<tenant>/<service>` and item events `<tenant>/<service>/<item_id>`, as they always were
on the wire: one tenant and service's requests share a partition (one fetcher sees them in order), and one item's
events share a partition (its updates arrive in order). The fetcher re-keys a request whose key differs, so a
second spelling of these keys would publish every request twice.

Every key of the run-state topic (sync-runs):

A run's state is a handful of keyed parts, each with one writer, so that on a compacted topic the latest record
of each key is the part's whole truth:

    run/<tenant>/<service>/<run_id>/queued        the trigger's request
    run/<tenant>/<service>/<run_id>/fetch         the fetcher's checkpoint, counts and offset marks
    run/<tenant>/<service>/<run_id>/embed/<m>     embedder member m's counts, per items partition
    run/<tenant>/<service>/<run_id>/watchdog      the watchdog's stall or failure notice
    run/<tenant>/<service>/<run_id>/end           the run succeeded
    run/<tenant>/<service>/<run_id>/pruned        the sweep after a succeeded full run
    cursor/<tenant>/<service>                     the last succeeded run and full run (never removed)

Each name is percent-encoded, so a tenant or run id holding a slash cannot shift the parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

RUN = "run"
CURSOR = "cursor"
EMBED = "embed"


def request_key(tenant_id: str, service: str) -> str:
    """The key of a sync request (sync-requests topic)."""
    return f"{tenant_id}/{service}"


def item_key(tenant_id: str, service: str, item_id: str) -> str:
    """The key of an item event (items topic), and of its replay from the dead letters."""
    return f"{tenant_id}/{service}/{item_id}"


def _name(value: str) -> str:
    return quote(value, safe="")


def run_prefix(tenant_id: str, service: str, run_id: str) -> str:
    """The prefix of every key of one run."""
    return f"{RUN}/{_name(tenant_id)}/{_name(service)}/{_name(run_id)}"


def run_key(tenant_id: str, service: str, run_id: str, part: str, member: str | None = None) -> str:
    """The key of one part of a run (`embed` parts name their embedder member)."""
    suffix = f"{part}/{_name(member or '')}" if part == EMBED else part
    return f"{run_prefix(tenant_id, service, run_id)}/{suffix}"


def cursor_key(tenant_id: str, service: str) -> str:
    """The key of a tenant and service's cursor."""
    return f"{CURSOR}/{_name(tenant_id)}/{_name(service)}"


@dataclass(frozen=True)
class StateKey:
    """A parsed key: a run's part (with its run id), or a cursor (run_id None)."""

    tenant_id: str
    service: str
    run_id: str | None = None
    part: str | None = None
    member: str | None = None


def parse_key(key: bytes | str | None) -> StateKey | None:
    """The key's parts, or None when it is not a key of this layout (an older version's or a stranger's)."""
    text = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
    parts = (text or "").split("/")
    if parts[0] == CURSOR and len(parts) == 3:
        return StateKey(unquote(parts[1]), unquote(parts[2]))
    if parts[0] != RUN or len(parts) not in (5, 6) or (parts[4] == EMBED) != (len(parts) == 6):
        return None
    tenant, service, run_id = (unquote(part) for part in parts[1:4])
    member = unquote(parts[5]) if len(parts) == 6 else None
    return StateKey(tenant, service, run_id, parts[4], member) if member != "" else None
