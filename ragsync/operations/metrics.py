"""Prometheus metrics, one catalogue for every component (each serves the ones it updates on `/metrics`)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import get_args

from prometheus_client import Counter, Gauge, Histogram

from ragsync.events import LetterStage
from ragsync.settings import DEFAULT_SERVICES

# Label values are bounded: a `service` label is one of the configured services (BATCH_SYNC_SERVICES, set by the
# app at start), a `stage` label one of the stages below, and anything else is counted under `other`. Service
# names come from requests any Kafka client can publish; made-up ones must not grow Prometheus' series.
OTHER = "other"
ITEM_STAGES = ("fetched", "upserted", "skipped", "deleted", "swept")
STAGES = frozenset((*ITEM_STAGES, *get_args(LetterStage)))
_CONFIGURED_SERVICES: set[str] = set(DEFAULT_SERVICES)


def label_services(services: Iterable[str]) -> None:
    """Label series by these services (BATCH_SYNC_SERVICES) from now on; any other is `other`."""
    _CONFIGURED_SERVICES.clear()
    _CONFIGURED_SERVICES.update(services)


def service_label(service: str) -> str:
    """The `service` label of `service`: its name when configured, else `other`."""
    return _bounded(service, _CONFIGURED_SERVICES)


def stage_label(stage: str) -> str:
    """The `stage` label of `stage`: its name when it is a known stage, else `other`."""
    return _bounded(stage, STAGES)


def _bounded(value: str, known: Collection[str]) -> str:
    return value if value in known else OTHER


SYNC_REQUESTS = Counter("ragsync_sync_requests_total", "Sync requests published, by trigger.", ["trigger"])
COORDINATOR_CALLS = Counter(
    "ragsync_coordinator_calls_total", "Coordinator Route calls by service and gRPC code.", ["service", "code"]
)
COORDINATOR_SECONDS = Histogram(
    "ragsync_coordinator_call_seconds",
    "Coordinator Route call latency.",
    ["service"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PAGES = Counter("ragsync_pages_total", "Pages fetched from the Coordinator.", ["service"])
ITEMS = Counter("ragsync_items_total", "Items through each stage.", ["stage", "service"])
DEAD_LETTERS = Counter("ragsync_dead_letters_total", "Messages and records dead-lettered, by stage.", ["stage"])
RUNS_FAILED = Counter(
    "ragsync_run_failures_total",
    "Runs this component failed (the fetcher, the completion check, the watchdog), by service.",
    ["service"],
)
RUNS_SKIPPED = Counter(
    "ragsync_runs_skipped_total", "Requests skipped because a run of the service was active.", ["service"]
)
DELETIONS_HELD = Counter(
    "ragsync_deletions_held_total",
    "Runs whose deletions were held over the deletion budget (RUN_MAX_DELETE_SHARE): nothing was deleted, a person "
    "confirms with `ragsync prune RUN --confirm`.",
    ["service"],
)
DELETIONS_REFUSED = Counter(
    "ragsync_deletions_refused_total",
    "Deletions the pruner did not carry out: a confirmation after a newer full run, or a succeeded run's deletions "
    "over the budget when it came to delete (a run-state record the completion check did not write).",
)
STALLS = Counter("ragsync_stalled_runs_total", "Stalls the watchdog acted on, by action.", ["service", "action"])
# Up to EMBEDDER_MAX_BATCH's bound: batches of 1024 to 4096 land in buckets of their own, not all above the last.
EMBED_BATCH_BUCKETS = (1, 4, 16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384)
EMBED_BATCH = Histogram("ragsync_embed_batch_size", "Items per embedding batch.", buckets=EMBED_BATCH_BUCKETS)
EMBED_SECONDS = Histogram("ragsync_embed_seconds", "Time to encode one batch.")
UPSERT_SECONDS = Histogram("ragsync_qdrant_upsert_seconds", "Time for Qdrant to acknowledge one batch upsert.")
INDEX_BUILDS = Counter(
    "ragsync_index_builds_total",
    "Search index builds after a full run, by outcome: built, skipped (nothing to build), failed.",
    ["outcome"],
)
COMMIT_FAILURES = Counter(
    "ragsync_commit_failures_total",
    "Embedder batches whose offsets could not be committed: their partitions moved to another member during the "
    "batch. Their items are delivered again (and found unchanged).",
)
COMPLETION_CHECK_FAILURES = Counter(
    "ragsync_completion_check_failures_total",
    "Times the embedder could not read its group's committed offsets to decide whether runs are complete; retried.",
)
RUN_RECORDS_EXPIRED = Counter(
    "ragsync_runs_expired_total",
    "Finished runs removed from the run-state topic (past RUN_HISTORY_DAYS or _PER_SERVICE).",
)
STAGE_CRASHES = Counter(
    "ragsync_stage_crashes_total",
    "Unexpected exceptions that ended a stage, by component and stage; the stage is restarted with backoff.",
    ["component", "stage"],
)
STORE_FREE_BYTES = Gauge("ragsync_store_free_bytes", "Free space of the embedded store's filesystem.")
STORE_MIN_FREE_BYTES = Gauge(
    "ragsync_store_min_free_bytes", "Free space under which the embedder takes no batches (STORE_MIN_FREE_MB)."
)
STORE_SPACE_PAUSES = Counter(
    "ragsync_store_space_pauses_total", "Times the embedder stopped taking batches for want of disk space."
)
STORE_ERRORS = Counter("ragsync_store_errors_total", "Batches Qdrant (or the broker) refused; retried.")
MODEL_PROCESS_EXITS = Counter(
    "ragsync_model_process_exits_total",
    "Times the model's own process (EMBEDDING_PROCESS) exited while encoding; its batch is retried on a new one.",
)
GROUP_LAG = Gauge(
    "ragsync_consumer_group_lag",
    "Items a consumer group has not committed yet, per partition, measured from the broker by the scheduler: "
    "high-water mark minus the group's committed offset, partitions without a live member included.",
    ["group", "topic", "partition"],
)
LAG_READ_FAILURES = Counter(
    "ragsync_lag_read_failures_total", "Times the scheduler could not read a consumer group's lag from the broker."
)
RELATED_ITEMS = Counter(
    "ragsync_related_items_total",
    "Stored items through the related-content stage, by outcome: computed (its edges), unchanged (edges kept), "
    "deleted (edges pointing at it removed).",
    ["outcome"],
)
RELATED_EDGES = Counter(
    "ragsync_related_edges_total", "Edges written: an item's own and those added to its neighbours' lists."
)
RELATED_FAILURES = Counter(
    "ragsync_related_failures_total",
    "Batches of related-content edges that failed (the store refused, or the broker); retried, runs unaffected.",
)
RELATED_LAG = Gauge(
    "ragsync_related_lag",
    "Items the embedder group stored whose related-content edges are not computed yet, by items partition.",
    ["partition"],
)
UNREADABLE_EVENTS = Counter("ragsync_unreadable_events_total", "Events that failed validation, by topic.", ["topic"])
SCHEDULER_NEXT_RUN = Gauge("ragsync_scheduler_next_run_timestamp_seconds", "When the scheduler fires next.")
SCHEDULER_LAST_RUN = Gauge("ragsync_scheduler_last_run_timestamp_seconds", "When the scheduler last fired.")
