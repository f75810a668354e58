"""Every option object, built from `Settings` here and nowhere else.

A component takes small, frozen, keyword-only option objects (defined beside it) and its collaborators; none sees
`Settings`. This module is the one place that reads settings into those objects, so a setting's reach is one
`git grep` away, and a test builds a component from exactly the options it needs.
The stages' option classes are imported where they are built: a command that runs no stage loads none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragsync.coordinator import CoordinatorOptions
from ragsync.coordinator.request import CallerIdentity
from ragsync.coordinator.tls import ChannelTls
from ragsync.messaging.kafka import KafkaOptions
from ragsync.messaging.sync_requests import RequestDefaults
from ragsync.messaging.topics import Topics
from ragsync.model.encoder import ModelOptions
from ragsync.operations.endpoints import DEFAULT_PORTS, OpsOptions, OpsTokens
from ragsync.operations.supervision import Restarts
from ragsync.runstate.deletions import DeletionBudget
from ragsync.settings import Settings, reveal
from ragsync.store import StoreOptions
from ragsync.store.related_edges import RelatedRules

if TYPE_CHECKING:
    from ragsync.producers.retention import History
    from ragsync.producers.scheduler import SchedulePlan
    from ragsync.streams.embedder import BatchOptions
    from ragsync.streams.fetcher import FetcherGroup, FetchLimits
    from ragsync.streams.related import RelatedBatches
    from ragsync.streams.watchdog import StallRules


def kafka(settings: Settings, bootstrap_servers: str | None = None) -> KafkaOptions:
    """The broker (KAFKA_BOOTSTRAP_SERVERS, or `bootstrap_servers`: a local broker's), its security and the
    clients' group timings."""
    return KafkaOptions(
        bootstrap_servers=bootstrap_servers or settings.bootstrap_servers,
        security_protocol=settings.kafka_security_protocol,
        ssl_cafile=settings.kafka_ssl_cafile,
        ssl_certfile=settings.kafka_ssl_certfile,
        ssl_keyfile=settings.kafka_ssl_keyfile,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_username=settings.kafka_sasl_username,
        sasl_password=reveal(settings.kafka_sasl_password),
        enable_idempotence=settings.kafka_enable_idempotence,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        partitions=settings.kafka_partitions,
        replication_factor=settings.kafka_replication_factor,
    )


def topics(settings: Settings) -> Topics:
    """The topic names under KAFKA_TOPIC_PREFIX."""
    return Topics.with_prefix(settings.kafka_topic_prefix)


def group(settings: Settings, component: str) -> str:
    """A consumer group's id under KAFKA_TOPIC_PREFIX."""
    return f"{settings.kafka_topic_prefix}{component}"


def store(settings: Settings) -> StoreOptions:
    """QDRANT_URL and QDRANT_API_KEY, else QDRANT_PATH and QDRANT_EMBEDDED; QDRANT_COLLECTION; STORE_MIN_FREE_MB."""
    return StoreOptions(
        url=settings.qdrant_url,
        api_key=reveal(settings.qdrant_api_key),
        path=settings.qdrant_path,
        embedded=settings.qdrant_embedded,
        collection=settings.qdrant_collection,
        min_free_mb=settings.store_min_free_mb,
    )


def model(settings: Settings) -> ModelOptions:
    """EMBEDDING_MODEL, EMBEDDING_BATCH_SIZE, TORCH_THREADS, EMBEDDING_BACKEND and EMBEDDING_PRECISION; ONNX exports
    under DATA_DIR/models."""
    return ModelOptions(
        name=settings.embedding_model,
        batch_size=settings.embedding_batch_size,
        threads=settings.torch_threads,
        backend=settings.embedding_backend,
        precision=settings.embedding_precision,
        cache=settings.data_dir / "models",
    )


def coordinator(settings: Settings, endpoint: str | None = None) -> CoordinatorOptions:
    """COORDINATOR_GRPC_ENDPOINT (or `endpoint`), its retries, message limit and TLS."""
    tls = None
    if settings.coordinator_tls_ca:
        tls = ChannelTls(
            ca=settings.coordinator_tls_ca, cert=settings.coordinator_tls_cert, key=settings.coordinator_tls_key
        )
    return CoordinatorOptions(
        endpoint=endpoint or settings.coordinator_grpc_endpoint,
        max_attempts=settings.coordinator_max_attempts,
        backoff_initial=settings.coordinator_backoff_initial,
        backoff_max=settings.coordinator_backoff_max,
        max_message_bytes=settings.coordinator_max_message_bytes,
        tls=tls,
    )


def request_defaults(settings: Settings) -> RequestDefaults:
    """BATCH_SYNC_SERVICES, DEFAULT_TENANT_ID and BATCH_SYNC_LIMIT."""
    return RequestDefaults(
        services=tuple(settings.batch_sync_services),
        tenant_id=settings.default_tenant_id,
        limit=settings.batch_sync_limit,
    )


def deletion_budget(settings: Settings) -> DeletionBudget:
    """What a run may delete without a person: RUN_MAX_DELETE_SHARE and RUN_MIN_DELETE_HOLD."""
    return DeletionBudget(max_share=settings.run_max_delete_share, min_hold=settings.run_min_delete_hold)


def restarts(settings: Settings) -> Restarts:
    """STAGE_MAX_CRASHES within STAGE_CRASH_WINDOW_S stop a component."""
    return Restarts(max_crashes=settings.stage_max_crashes, window_s=settings.stage_crash_window_s)


def related_rules(settings: Settings) -> RelatedRules:
    """RELATED_TOP_K and RELATED_MIN_SCORE."""
    return RelatedRules(top_k=settings.related_top_k, min_score=settings.related_min_score)


def ops(settings: Settings, component: str) -> OpsOptions:
    """OPS_HOST, OPS_PORT (default: the component's own port), OPS_TOKEN and ADMIN_TOKEN."""
    port = settings.ops_port if settings.ops_port is not None else DEFAULT_PORTS[component]
    tokens = OpsTokens(ops=reveal(settings.ops_token), admin=reveal(settings.admin_token))
    return OpsOptions(host=settings.ops_host, port=port, tokens=tokens)


def fetch_limits(settings: Settings) -> FetchLimits:
    """COORDINATOR_TENANT_ID / _USER_ID, BATCH_SYNC_LIMIT, BATCH_SYNC_TIMEOUT, COORDINATOR_MAX_PAGES, ITEM_MAX_BYTES
    and DEFAULT_TENANT_ID."""
    from ragsync.streams.fetcher import FetchLimits

    return FetchLimits(
        identity=CallerIdentity(tenant_id=settings.coordinator_tenant_id, user_id=settings.coordinator_user_id),
        page_limit=settings.batch_sync_limit,
        call_timeout_s=settings.batch_sync_timeout,
        max_pages=settings.coordinator_max_pages,
        item_max_bytes=settings.item_max_bytes,
        default_tenant=settings.default_tenant_id,
    )


def fetcher_group(settings: Settings) -> FetcherGroup:
    """The fetcher group's id under KAFKA_TOPIC_PREFIX, its faust state under DATA_DIR, FETCHER_CONCURRENCY."""
    from ragsync.streams.fetcher import FetcherGroup

    return FetcherGroup(
        name=group(settings, "fetcher"),
        data_dir=settings.data_dir / "fetcher",
        concurrency=settings.fetcher_concurrency,
    )


def batches(settings: Settings) -> BatchOptions:
    """EMBEDDER_MAX_BATCH and EMBEDDER_POLL_TIMEOUT_MS; a keepalive at a third of KAFKA_MAX_POLL_INTERVAL_MS."""
    from ragsync.streams.embedder import BatchOptions

    return BatchOptions(
        max_batch=settings.embedder_max_batch,
        poll_timeout_ms=settings.embedder_poll_timeout_ms,
        keepalive_seconds=settings.kafka_max_poll_interval_ms / 1000 / 3,
    )


def related_batches(settings: Settings) -> RelatedBatches:
    """RELATED_MAX_BATCH."""
    from ragsync.streams.related import RelatedBatches

    return RelatedBatches(max_batch=settings.related_max_batch)


def stall_rules(settings: Settings) -> StallRules:
    """RUN_STALL_TIMEOUT, WATCHDOG_INTERVAL and WATCHDOG_MAX_RESUMES."""
    from ragsync.streams.watchdog import StallRules

    return StallRules(
        stall_timeout_s=settings.run_stall_timeout,
        interval_s=settings.watchdog_interval,
        max_resumes=settings.watchdog_max_resumes,
    )


def schedule_plan(settings: Settings) -> SchedulePlan:
    """BATCH_SYNC_ENABLED, BATCH_SYNC_ON_STARTUP, BATCH_SYNC_SCHEDULE, BATCH_SYNC_TIMEZONE and
    INCREMENTAL_SYNC_SCHEDULE."""
    from ragsync.producers.scheduler import SchedulePlan

    return SchedulePlan(
        enabled=settings.batch_sync_enabled,
        on_startup=settings.batch_sync_on_startup,
        cron=settings.batch_sync_schedule,
        timezone=settings.batch_sync_timezone,
        incremental_cron=settings.incremental_sync_schedule,
    )


def history(settings: Settings) -> History:
    """RUN_HISTORY_DAYS and RUN_HISTORY_PER_SERVICE."""
    from ragsync.producers.retention import History

    return History(days=settings.run_history_days, per_service=settings.run_history_per_service)
