"""Every setting, read from the environment (names as the existing deployment uses them) with local defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ragsync.errors import SetupError

PRECISIONS: dict[str, tuple[str, ...]] = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8")}
# The Coordinator page limit: FETCHER_CONCURRENCY (4) pages in flight, each costing at most 8 times its size, fit
# the fetcher's 768 MiB beside its own 128 MiB (the arithmetic is in the README, at COORDINATOR_MAX_MESSAGE_BYTES).
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DEFAULT_SERVICES = ["payment-service", "assessment-service", "devlab-service", "analytics-service"]


MIN_TOKEN_CHARS = 16


class Settings(BaseSettings):
    """All of ragsync's settings. Each field is read from the environment variable of the same name, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- the existing deployment's names (coordinator contract) ---
    batch_sync_enabled: bool = True
    batch_sync_schedule: str = "0 2 * * *"
    batch_sync_timezone: str = "UTC"
    incremental_sync_schedule: str | None = Field(
        None, description="Cron of incremental syncs (records changed since the last success); unset: none."
    )
    batch_sync_on_startup: bool = False
    batch_sync_limit: int = Field(1000, ge=1, le=100_000)
    batch_sync_services: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_SERVICES))
    batch_sync_timeout: float = Field(300.0, gt=0, description="Deadline of one page call, seconds.")
    coordinator_enabled: bool = True
    coordinator_grpc_endpoint: str = "localhost:50051"
    rag_private_key: SecretStr | None = Field(None, description="base64 of a PEM EC P-256 private key; signs calls.")
    default_tenant_id: str = "default-tenant"

    # --- Coordinator calls ---
    coordinator_tenant_id: str = "rag-system"
    coordinator_user_id: str = "system"
    coordinator_max_attempts: int = Field(5, ge=1, description="Attempts per page on retryable codes.")
    coordinator_backoff_initial: float = Field(0.5, gt=0)
    coordinator_backoff_max: float = Field(30.0, gt=0)
    coordinator_max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES,
        ge=4 * 1024 * 1024,
        description="Largest page the client accepts (gRPC's default is 4 MB); a larger one fails its run.",
    )
    coordinator_max_pages: int = Field(100_000, ge=1, description="A run past this many pages stops with an error.")
    coordinator_tls_ca: Path | None = Field(None, description="PEM CA of the Coordinator's certificate; turns TLS on.")
    coordinator_tls_cert: Path | None = Field(None, description="PEM client certificate, for mutual TLS.")
    coordinator_tls_key: Path | None = Field(None, description="PEM key of COORDINATOR_TLS_CERT.")

    # --- Kafka ---
    kafka_bootstrap_servers: str | None = Field(
        None, description="host:port list. Unset: `demo`/`sync` start a local broker; components use localhost:9092."
    )
    kafka_topic_prefix: str = "ragsync."
    kafka_partitions: int = Field(6, ge=1, description="Partitions of each topic; caps the embedder group size.")
    kafka_replication_factor: int = Field(1, ge=1)
    kafka_enable_idempotence: bool = Field(False, description="Turn on for real Kafka clusters.")
    kafka_session_timeout_ms: int = Field(10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(1_000, ge=100)
    kafka_max_poll_interval_ms: int = Field(
        300_000,
        ge=1000,
        description="Longest a consumer may go without polling before the group drops it. The embedder polls (its "
        "partitions paused) every third of it while a batch takes longer, e.g. waiting on a store's index build.",
    )
    kafka_fetch_max_wait_ms: int = Field(
        200,
        ge=10,
        le=10_000,
        description="Longest a consumer's fetch waits at the broker for new events. Kafka answers as soon as events "
        "arrive; the local broker looks again at intervals within the wait, so a short wait picks events up sooner.",
    )

    # --- Kafka security: every client ragsync makes (producers, consumers, admin, run ledger, faust agent) ---
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_ssl_cafile: Path | None = Field(None, description="PEM of the CA that signed the brokers' certificates.")
    kafka_ssl_certfile: Path | None = Field(None, description="PEM client certificate, for brokers that ask for one.")
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM key of KAFKA_SSL_CERTFILE.")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None

    # --- fetcher ---
    fetcher_concurrency: int = Field(4, ge=1, description="Sync requests one fetcher works on at once.")
    item_max_bytes: int = Field(
        1_000_000, ge=1024, description="Largest item event; bigger records are dead-lettered (Kafka's default limit)."
    )

    # --- run tracking and the watchdog (in the scheduler) ---
    run_stall_timeout: float = Field(600.0, gt=0, description="Seconds without progress before a run is stalled.")
    watchdog_interval: float = Field(30.0, gt=0, description="Seconds between watchdog checks.")
    lag_interval_s: float = Field(
        15.0, gt=0, description="Seconds between the scheduler's readings of the embedding group's lag."
    )
    watchdog_max_resumes: int = Field(3, ge=0, description="Re-requests of a stalled run before it is failed.")
    stage_max_crashes: int = Field(
        5, ge=1, description="A stage that crashes this often within STAGE_CRASH_WINDOW_S stops its process."
    )
    stage_crash_window_s: float = Field(600.0, gt=0)
    run_max_dead_letter_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A run fails when more of its records than this share were dead-lettered, or when records came "
        "in and none was stored, unchanged or deleted (0: any dead letter fails it; 1: never, as before).",
    )
    run_max_delete_share: float = Field(
        0.3,
        ge=0,
        le=1,
        description="A run whose deletions (its sweep and the records flagged deleted) would remove more than this "
        "share of its tenant's points of the service is held: nothing is deleted until `ragsync prune RUN --confirm` "
        "(0: every deletion is held; 1: the guard is off).",
    )
    run_min_delete_hold: int = Field(
        100,
        ge=0,
        description="A deletion of fewer points than this is never held, so a small service can shrink (except an "
        "empty answer to a full sync, which is always held while the guard is on).",
    )
    run_history_days: float = Field(
        14.0, gt=0, description="Finished runs older than this are removed from the run-state topic (cursors stay)."
    )
    run_history_per_service: int = Field(
        100, ge=1, description="At most this many finished runs are kept per tenant and service."
    )

    # --- how records become items ---
    schemas_dir: Path = Field(Path("schemas"), description="Folder of <service>.toml schemas (replace built-ins).")

    # --- embedder ---
    embedding_model: str = Field("all-MiniLM-L6-v2", description="Model name or local path.")
    embedding_batch_size: int = Field(32, ge=1)
    embedder_max_batch: int = Field(
        4096,
        ge=1,
        le=16384,
        description="The most item events read, encoded and upserted per batch. A batch takes what the embedder "
        "stored in about a second, at least 1024: each costs fixed time (a store lookup, its last write, a progress "
        "record, a commit) in which the model idles, so a fast encoder gets large batches and a slow one keeps "
        "frequent progress.",
    )
    embedder_poll_timeout_ms: int = Field(500, ge=10)
    torch_threads: int | None = Field(None, ge=1, description="Threads of the model (torch or onnxruntime).")
    embedding_backend: Literal["torch", "onnx"] = Field("torch", description="Runs the model: torch or onnxruntime.")
    embedding_precision: Literal["fp32", "bf16", "int8"] = Field(
        "fp32", description="torch: fp32 or bf16; onnx: fp32 or int8. Changing it re-embeds, like a model change."
    )
    embedding_process: bool = Field(
        False,
        description="on: the model runs in a child process of the embedder, so encoding overlaps the store's writes "
        "(they hold the GIL). For fast encoders; costs a second copy of the model in memory.",
    )

    # --- related-content edges ---
    related_edges: bool = Field(
        False, description="on: each stored item gets edges to its nearest items of the same tenant (own stage)."
    )
    related_top_k: int = Field(5, ge=1, le=100, description="Related items kept per item.")
    related_min_score: float = Field(
        0.6,
        ge=-1,
        le=1,
        description="Least cosine similarity of a related item. 0.6, measured on 800 demo items: closer than 93 % of "
        "all their pairs, and every item's 5th-nearest item scored more (the lowest 5 % from 0.69).",
    )
    related_max_batch: int = Field(256, ge=1, description="Stored items whose edges are computed per batch.")

    # --- Qdrant ---
    qdrant_url: str | None = Field(None, description="Qdrant server URL. Unset: embedded on disk at QDRANT_PATH.")
    qdrant_api_key: SecretStr | None = None
    qdrant_path: Path = Path("data/qdrant")
    qdrant_embedded: Literal["edge", "local"] = Field(
        "edge", description="Embedded store without QDRANT_URL: qdrant-edge, or qdrant-client's local mode."
    )
    qdrant_collection: str = "ragsync"
    store_min_free_mb: float = Field(
        512,
        ge=0,
        description="The embedded store's filesystem needs this much free space, or the embedder takes no batches "
        "until it is back (its files are memory-mapped: a full disk kills the process). 0: no watch.",
    )

    # --- operations endpoints (/metrics, /healthz, /readyz, /status) ---
    ops_host: str = Field("127.0.0.1", description="Address the ops endpoints listen on (0.0.0.0 in containers).")
    ops_port: int | None = Field(None, ge=0, le=65535, description="Port; unset: each component's default.")
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token of POST /admin/sync (scheduler) and /admin/prune (embedder), 16 characters at "
        "least; unset: OPS_TOKEN guards them, and with neither they are off.",
    )
    ops_token: SecretStr | None = Field(
        None,
        description="Bearer token that GET /status and POST /admin/* need, 16 characters at least; unset: /status "
        "is open (bind OPS_HOST to loopback or guard it by the network). /healthz, /readyz and /metrics stay open.",
    )

    # --- local files ---
    data_dir: Path = Path("data")

    @field_validator(
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "coordinator_tls_ca",
        "coordinator_tls_cert",
        "coordinator_tls_key",
        "qdrant_api_key",
        "rag_private_key",
        "admin_token",
        "ops_token",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # A Secret or compose file lists every key, empty where unused: an empty value means "not set".
        return None if value == "" else value

    @field_validator("admin_token", "ops_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # A short bearer token is guessed; refuse it at start-up rather than serve run state behind it.
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"a token needs {MIN_TOKEN_CHARS} characters at least (`openssl rand -hex 16` makes one)")
        return value

    @field_validator("batch_sync_services", mode="before")
    @classmethod
    def _split_services(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("batch_sync_services")
    @classmethod
    def _services_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("BATCH_SYNC_SERVICES names no service; give a comma-separated list")
        return value

    @model_validator(mode="after")
    def _precision_offered(self) -> Settings:
        try:
            check_variant(self.embedding_backend, self.embedding_precision)
        except SetupError as error:
            raise ValueError(str(error)) from error
        return self

    @model_validator(mode="after")
    def _security_complete(self) -> Settings:
        problems = []
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            problems.append(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )
        pairs = (
            ("KAFKA_SSL_CERTFILE", self.kafka_ssl_certfile, "KAFKA_SSL_KEYFILE", self.kafka_ssl_keyfile),
            ("COORDINATOR_TLS_CERT", self.coordinator_tls_cert, "COORDINATOR_TLS_KEY", self.coordinator_tls_key),
        )
        for name, value, other, other_value in pairs:
            if (value is None) != (other_value is None):
                given, missing = (name, other) if value is not None else (other, name)
                problems.append(f"{given} is set but {missing} is not: a client certificate needs both")
        if self.coordinator_tls_cert is not None and self.coordinator_tls_ca is None:
            problems.append("COORDINATOR_TLS_CERT needs COORDINATOR_TLS_CA (TLS is on only with a CA)")
        for name in (
            "kafka_ssl_cafile",
            "kafka_ssl_certfile",
            "kafka_ssl_keyfile",
            "coordinator_tls_ca",
            "coordinator_tls_cert",
            "coordinator_tls_key",
        ):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                problems.append(f"{name.upper()}={str(path)!r}: no such file")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def bootstrap_servers(self) -> str:
        """The broker list the long-running components connect to."""
        return self.kafka_bootstrap_servers or "localhost:9092"


def check_variant(backend: str, precision: str) -> None:
    """Raise a SetupError naming both settings when the backend cannot run the model at that precision."""
    if precision not in PRECISIONS.get(backend, ()):
        offered = "; ".join(f"{b}: {', '.join(p)}" for b, p in PRECISIONS.items())
        raise SetupError(
            f"EMBEDDING_PRECISION={precision!r} is not offered with EMBEDDING_BACKEND={backend!r} (offered: {offered})"
        )


# What pydantic accepts where its own message does not say (a Literal's message lists its values already).
ACCEPTED = {"bool_parsing": "use true or false (also on/off, yes/no, 1/0)"}


def describe_invalid(error: ValidationError) -> str:
    """A settings error as one line per bad setting: its environment name, the value given, what is wrong and,
    for a fixed set of values, which are accepted."""
    lines = []
    for problem in error.errors(include_url=False):
        name = "_".join(str(part) for part in problem["loc"]).upper()
        if not name:  # a rule over several settings: its message names them
            lines.append(str(problem["msg"]).removeprefix("Value error, "))
            continue
        given = problem.get("input")
        value = f"={given!r}" if isinstance(given, str | int | float) and not _secret(name) else ""
        accepted = ACCEPTED.get(problem["type"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}{value}: {message}" + (f"; {accepted}" if accepted else ""))
    return "; ".join(lines)


def _secret(name: str) -> bool:
    return any(word in name for word in ("PASSWORD", "KEY", "TOKEN"))


def reveal(secret: SecretStr | None) -> str | None:
    """A secret setting's value, for the one client that needs it (never for a log or a message)."""
    return secret.get_secret_value() if secret is not None else None
