"""Every setting, read from the environment (names as the existing deployment uses them) with local defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ragsync.errors import SetupError

PRECISIONS: dict[str, tuple[str, ...]] = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8")}
# The Coordinator page limit: FETCHER_CONCURRENCY (4) pages in flight, each costing at most 8 times its size, fit
# the fetcher's 768 MiB beside its own 128 MiB (the arithmetic is in the description of coordinator_max_message_bytes).
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DEFAULT_SERVICES = ["payment-service", "assessment-service", "devlab-service", "analytics-service"]


MIN_TOKEN_CHARS = 16


SWITCH_WORDS = {"true": "on", "1": "on", "yes": "on", "on": "on", "false": "off", "0": "off", "no": "off", "off": "off"}


class Settings(BaseSettings):
    """All of ragsync's settings. Each field is read from the environment variable of the same name, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- the existing deployment's names (coordinator contract) ---
    batch_sync_enabled: bool = Field(
        True, description="The scheduler publishes on its schedule (manual triggers work regardless)."
    )
    batch_sync_schedule: str = Field("0 2 * * *", description="Cron expression.")
    batch_sync_timezone: str = Field("UTC", description="Time zone the cron expressions are read in.")
    incremental_sync_schedule: str | None = Field(
        None, description="Cron of incremental syncs (records changed since the last success), e.g. `*/15 * * * *`."
    )
    batch_sync_on_startup: bool = Field(False, description="The scheduler also requests a sync when it starts.")
    batch_sync_limit: int = Field(1000, ge=1, le=100_000, description="Records per page.")
    batch_sync_services: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SERVICES), description="Comma list of services to sync."
    )
    batch_sync_timeout: float = Field(300.0, gt=0, description="Deadline of one page call, seconds.")
    coordinator_enabled: bool = Field(True, description="The fetcher refuses to start when false.")
    coordinator_grpc_endpoint: str = Field("localhost:50051", description="The Coordinator.")
    rag_private_key: SecretStr | None = Field(
        None, description="Base64 of a PEM EC P-256 private key; when set every call is signed."
    )
    default_tenant_id: str = Field(
        "default-tenant", min_length=1, max_length=200, description="Tenant of requests that name none."
    )

    # --- Coordinator calls ---
    coordinator_tenant_id: str = Field("rag-system", description="Who the calls are made as: the tenant.")
    coordinator_user_id: str = Field("system", description="Who the calls are made as: the user.")
    coordinator_max_attempts: int = Field(
        5,
        ge=1,
        description=(
            "Attempts per page on UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED (not an answer"
            " over `COORDINATOR_MAX_MESSAGE_BYTES`: it would be as large again)."
        ),
    )
    coordinator_backoff_initial: float = Field(
        0.5, gt=0, description="Exponential backoff with jitter, seconds: the first wait."
    )
    coordinator_backoff_max: float = Field(
        30.0, gt=0, description="Exponential backoff with jitter, seconds: the longest wait."
    )
    coordinator_max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES,
        ge=4 * 1024 * 1024,
        description=(
            "Largest page accepted (gRPC's own default, 4 MB, is less than one page of large records). A "
            "larger answer fails its run at once, not retried, with one error naming this setting (`… "
            "RESOURCE_EXHAUSTED (not retryable): Received message larger than max … (the page is over "
            "COORDINATOR_MAX_MESSAGE_BYTES=16777216: lower the records per page …)`), and the fetcher goes on"
            " to its next request (tested). The default is what the fetcher's memory allows: a page is parsed"
            " whole, and measured with tracemalloc on demo pages of 1,000 records its parsed records and its "
            "digest take 2.7-3.6 bytes per byte of JSON (at most 4, tested); with the answer (1), its text "
            "(1), the item events it becomes (1.5) and room for the allocator (0.5), a page in flight costs 8"
            " times its size, and a run holds one page at a time. `FETCHER_CONCURRENCY` (4) x 16 MiB x 8 = "
            "512 MiB, beside the idle fetcher's 103 MiB (RSS, measured; 128 MiB counted), is 640 MiB of the "
            "fetcher pod's 768 MiB limit (`k8s/base/fetcher.yaml`; a test checks the sum against it). Raise "
            "this only with the pod's limit, or lower it with a higher `FETCHER_CONCURRENCY`."
        ),
    )
    coordinator_max_pages: int = Field(
        100_000, ge=1, description="A run past this many pages fails instead of looping."
    )
    coordinator_tls_ca: Path | None = Field(
        None, description="PEM file: setting the CA turns TLS on for the Coordinator channel."
    )
    coordinator_tls_cert: Path | None = Field(
        None, description="PEM file: a client certificate (mutual TLS), with COORDINATOR_TLS_KEY."
    )
    coordinator_tls_key: Path | None = Field(None, description="PEM file: the key of COORDINATOR_TLS_CERT.")

    # --- Kafka ---
    kafka_bootstrap_servers: str | None = Field(
        None, description="`demo`/`sync` start a local broker; the long-running components use `localhost:9092`."
    )
    kafka_topic_prefix: str = Field("ragsync.", description="Prefix of the four topic names.")
    kafka_partitions: int = Field(
        6,
        ge=1,
        description=(
            "Partitions of each topic, used when ragsync creates its topics; caps the useful embedder group size."
        ),
    )
    kafka_replication_factor: int = Field(
        1, ge=1, description="Replication factor, used when ragsync creates its topics."
    )
    kafka_enable_idempotence: bool = Field(
        False, description="Turn on for real Kafka clusters (the local broker has no idempotent producer)."
    )
    kafka_session_timeout_ms: int = Field(10_000, ge=1000, description="Consumer group liveness: the session timeout.")
    kafka_heartbeat_interval_ms: int = Field(
        1_000, ge=100, description="Consumer group liveness: the heartbeat interval."
    )
    kafka_max_poll_interval_ms: int = Field(
        300_000,
        ge=1000,
        description=(
            "Longest a consumer may go without polling before its group drops it; an embedder whose batch "
            "takes longer than a third of it polls meanwhile with its partitions paused."
        ),
    )
    kafka_fetch_max_wait_ms: int = Field(
        200,
        ge=10,
        le=10_000,
        description=(
            "Longest a consumer's fetch waits at the broker for new events, the fetcher's faust consumer "
            "included (faust alone would wait 1.5 s); Kafka answers as soon as events arrive, the local "
            "broker only when it looks again, so this bounds how late it picks up a sync request."
        ),
    )

    # --- Kafka security: every client ragsync makes (producers, consumers, admin, run ledger, faust agent) ---
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description=(
            "`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`, for every Kafka client ragsync makes (see "
            "Connecting to a secured cluster)."
        ),
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM file: the CA of the brokers' certificates (unset: the system's CAs)."
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM file: a client certificate for brokers that ask for one (with KAFKA_SSL_KEYFILE)."
    )
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM file: the key of KAFKA_SSL_CERTFILE.")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="The SASL login's mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`)."
    )
    kafka_sasl_username: str | None = Field(None, description="The SASL login's user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="The SASL login's password; never logged or shown.")

    # --- fetcher ---
    fetcher_concurrency: int = Field(4, ge=1, description="Sync requests one fetcher works on at once.")
    item_max_bytes: int = Field(
        1_000_000,
        ge=1024,
        description="Largest item event (Kafka's default message limit); a bigger record is dead-lettered.",
    )

    # --- run tracking and the watchdog (in the scheduler) ---
    run_stall_timeout: float = Field(
        600.0, gt=0, description="Seconds without progress before the watchdog calls a run stalled."
    )
    watchdog_interval: float = Field(30.0, gt=0, description="Seconds between watchdog checks.")
    lag_interval_s: float = Field(
        15.0,
        gt=0,
        description=(
            "Seconds between the scheduler's readings of the embedding group's lag (`ragsync_consumer_group_lag`)."
        ),
    )
    watchdog_max_resumes: int = Field(3, ge=0, description="Re-requests of a stalled run before the watchdog fails it.")
    stage_max_crashes: int = Field(
        5,
        ge=1,
        description=(
            "A stage that crashes is restarted with backoff (0.5 s doubling to 30 s); this many crashes of "
            "one stage within `STAGE_CRASH_WINDOW_S` stop its process (exit code 3), for Kubernetes or "
            "compose to restart it."
        ),
    )
    stage_crash_window_s: float = Field(
        600.0,
        gt=0,
        description=(
            "Seconds: the window in which `STAGE_MAX_CRASHES` crashes of one stage stop its process (exit code 3)."
        ),
    )
    run_max_dead_letter_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description=(
            "A run whose every record was processed fails when more of its records than this share were dead-"
            "lettered, or when records came in and none was stored, unchanged or deleted; `0`: any dead "
            "letter fails it; `1`: never (the behaviour before)."
        ),
    )
    run_max_delete_share: float = Field(
        0.3,
        ge=0,
        le=1,
        description=(
            "A run whose deletions (a full run's sweep plus the records it found flagged deleted) would "
            "remove more than this share of its tenant's points of the service is held: nothing is deleted, "
            "the run ends `held` (a kind of `failed`) until `ragsync prune RUN --confirm`; `0`: every "
            "deletion is held; `1`: the guard is off (see When a sync would delete too much)."
        ),
    )
    run_min_delete_hold: int = Field(
        100,
        ge=0,
        description=(
            "A deletion of fewer points than this is never held, so a small service can shrink; an empty "
            "answer to a full sync that would delete anything is held all the same while the guard is on."
        ),
    )
    run_history_days: float = Field(
        14.0,
        gt=0,
        description=(
            "Finished runs older than this many days are removed from the run-state topic (by the scheduler, "
            "every `WATCHDOG_INTERVAL`); cursors stay."
        ),
    )
    run_history_per_service: int = Field(
        100,
        ge=1,
        description=(
            "Finished runs past the newest N of their tenant and service are removed from the run-state topic"
            " (by the scheduler, every `WATCHDOG_INTERVAL`); cursors stay."
        ),
    )

    # --- how records become items ---
    schemas_dir: Path = Field(
        Path("schemas"), description="Folder of `<service>.toml` schemas; one here replaces the built-in one."
    )

    # --- embedder ---
    embedding_model: str = Field(
        "all-MiniLM-L6-v2", description="The packaged model, or a path to a local sentence-transformers folder."
    )
    embedding_batch_size: int = Field(32, ge=1, description="Texts per forward pass.")
    embedder_max_batch: int = Field(
        4096,
        ge=1,
        le=16384,
        description=(
            "The most item events read, upserted and committed together. A batch takes what the embedder "
            "stored in about a second (at least 1024, or this if smaller), so a fast encoder gets large "
            "batches and a slow model frequent progress; it waits for nothing: it takes what the last fetch "
            "brought."
        ),
    )
    embedder_poll_timeout_ms: int = Field(500, ge=10, description="How long a poll waits for items.")
    torch_threads: int | None = Field(
        None,
        ge=1,
        description=(
            "The model's thread count, torch or onnxruntime (one per embedder process when several share a machine)."
        ),
    )
    embedding_backend: Literal["torch", "onnx"] = Field(
        "torch",
        description=(
            "How the model runs: `torch` (with `fp32` or `bf16`) or `onnx` (with `fp32` or `int8`), see Model"
            " variants; any other pair with EMBEDDING_PRECISION is refused at start-up, naming both."
        ),
    )
    embedding_precision: Literal["fp32", "bf16", "int8"] = Field(
        "fp32",
        description=(
            "The model's precision: `fp32` or `bf16` with torch, `fp32` or `int8` with onnx (see Model "
            "variants); any other pair is refused at start-up, naming both."
        ),
    )
    embedding_process: Literal["auto", "on", "off"] = Field(
        "auto",
        description=(
            "Where the embedder runs its model. `auto`: in its own process at first, then in a child process "
            "if the first 2,048 texts show the model at most 6 times the CPU of the rest of the batch, on a "
            "machine with 2 cores or more (the rule, and the benchmark behind it: Architecture). `on`: in a "
            "child process from the start, so encoding overlaps the store's writes; it costs a second copy of "
            "the model in memory. `off`: always in the embedder's own process. `true` and `false` mean `on` "
            "and `off`."
        ),
    )

    # --- related-content edges ---
    related_edges: bool = Field(
        False,
        description=(
            "`on`: each stored item also gets edges to its nearest items of the same tenant (see Related content)."
        ),
    )
    related_top_k: int = Field(5, ge=1, le=100, description="Related items kept per item (1-100).")
    related_min_score: float = Field(
        0.6,
        ge=-1,
        le=1,
        description=(
            "Least cosine similarity of a related item. Measured on 800 demo items (200 of each service): 93 "
            "% of all their pairs score below 0.6, and every item's 5th-nearest item scores above it (the "
            "lowest 5 % from 0.69)."
        ),
    )
    related_max_batch: int = Field(
        256, ge=1, description="Stored items whose edges the related stage computes per batch."
    )

    # --- Qdrant ---
    qdrant_url: str | None = Field(None, description="A Qdrant server; unset: embedded on disk at `QDRANT_PATH`.")
    qdrant_api_key: SecretStr | None = Field(None, description="The Qdrant server's API key.")
    qdrant_path: Path = Field(
        Path("data/qdrant"),
        description="The embedded store's folder (one process owns it; a second gets an error saying so).",
    )
    qdrant_embedded: Literal["edge", "local"] = Field(
        "edge",
        description=(
            "The embedded store: `edge` (qdrant-edge, Qdrant's engine in-process) or `local` (qdrant-client's"
            " local mode, for folders written before qdrant-edge became the default)."
        ),
    )
    qdrant_collection: str = Field(
        "ragsync",
        description=(
            "The alias searches read; it points at one collection per model (`ragsync--<model>-<dimension>`, "
            "cosine), created on first use."
        ),
    )
    store_min_free_mb: float = Field(
        512,
        ge=0,
        description=(
            "Free space the embedded store's filesystem keeps: below it the embedder takes no batches "
            "(nothing committed, `/readyz` 503 `disk`, alert `StoreDiskLow`) and resumes by itself once space"
            " is back; `0`: no watch. Not used with `QDRANT_URL` (the server watches its own disk)."
        ),
    )

    # --- operations endpoints (/metrics, /healthz, /readyz, /status) ---
    ops_host: str = Field(
        "127.0.0.1",
        description=(
            "Where `/healthz`, `/readyz`, `/status`, `/metrics` listen: the address (`0.0.0.0` in containers)."
        ),
    )
    ops_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description=(
            "Where `/healthz`, `/readyz`, `/status`, `/metrics` listen: the port; unset: per component, "
            "scheduler 9100, fetcher 9101, embedder 9102 (`0`: any free port)."
        ),
    )
    admin_token: SecretStr | None = Field(
        None,
        description=(
            "Bearer token of `POST /admin/sync` (scheduler) and `POST /admin/prune` (embedder), 16 characters"
            " at least; unset: `OPS_TOKEN` guards them, and with neither they are off."
        ),
    )
    ops_token: SecretStr | None = Field(
        None,
        description=(
            "Bearer token that `GET /status` and `POST /admin/*` need, 16 characters at least (a shorter one "
            "is refused at start-up, in one line); `/healthz`, `/readyz` and `/metrics` stay open for probes "
            "and Prometheus; unset: `/status` is open, so keep `OPS_HOST` on loopback or the port behind a "
            "NetworkPolicy."
        ),
    )

    # --- local files ---
    data_dir: Path = Field(
        Path("data"), description="Local state: the fetcher agent's folder, ONNX exports under `models/`."
    )

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

    @field_validator("embedding_process", mode="before")
    @classmethod
    def _switch_words(cls, value: object) -> object:
        # The setting was a switch before `auto`: its true and false spellings still mean on and off.
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str) and value.strip().lower() in SWITCH_WORDS:
            return SWITCH_WORDS[value.strip().lower()]
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


class SettingsError(SetupError):
    """Settings that cannot be read as given, so no command starts: the message names each environment variable,
    the value given and what is wrong or what is accepted (`describe_invalid`)."""


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
