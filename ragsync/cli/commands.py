"""The `ragsync` command line: demo, one-shot sync, the long-running components, trigger and search."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from typer._click.exceptions import UsageError  # typer's own click: every bad option, value or argument
from typer.core import TyperGroup

from ragsync.cli import exits
from ragsync.errors import RagsyncError, SetupError
from ragsync.events import SERVICE_PATTERN, LetterStage, SyncType
from ragsync.operations.logs import LogFormat
from ragsync.operations.logs import configure as configure_logs
from ragsync.settings import Settings
from ragsync.shown import as_text, labelled

if TYPE_CHECKING:
    from ragsync.store import VectorStore
    from ragsync.store.related_edges import RelatedItem

T = TypeVar("T")


class CommandLine(TyperGroup):
    """The `ragsync` group. A bad option, a value outside the accepted ones or a missing argument is one line naming
    what is accepted, and exit code 2, as every other start-up problem is; not click's usage block and framed
    panel. Every command's expected errors end here too, each as one line and its exit code (`exits`)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        try:
            code = super().main(*args, **{**kwargs, "standalone_mode": False})
        except UsageError as error:
            _usage_error(error)
        except typer.Abort:
            err.print("aborted")
            sys.exit(exits.FAILED)
        except RagsyncError as error:
            exits.end(error, err)
        sys.exit(code if isinstance(code, int) else exits.OK)


def _usage_error(error: UsageError) -> NoReturn:
    if type(error).__name__ != "NoArgsIsHelpError":  # that one's help is printed already
        where = error.ctx.command_path if error.ctx is not None else "ragsync"
        # Typer's check of a Literal or Enum value says "Value error, " before the values: noise on one line.
        err.print(labelled(f"{where}:", error.format_message().replace("Value error, ", "")), soft_wrap=True)
    sys.exit(error.exit_code)


app = typer.Typer(
    cls=CommandLine,
    help="Keep a RAG system's Qdrant collection in step with the platform's records.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Lines that hold data are `Text` (ragsync.shown), never markup; and no emoji codes: a record's `:smile:` is data.
err = Console(stderr=True, emoji=False)
out = Console(emoji=False)

SAMPLE_QUERY = "refund after the learner withdrew from the course"


OWN_LOGGERS = ("ragsync",)
LONG_RUNNING = frozenset({"scheduler", "fetcher", "embedder", "coordinator", "broker"})


class LogLevel(StrEnum):
    """The levels `--log-level` accepts (in any case)."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


def _version(shown: bool) -> None:
    if shown:
        from ragsync import __version__

        print(f"ragsync {__version__}")
        raise typer.Exit(exits.OK)


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(case_sensitive=False, help="Default: INFO for long-running components, else WARNING."),
    ] = None,
    log_format: Annotated[
        LogFormat,
        typer.Option(envvar="LOG_FORMAT", case_sensitive=False, help="text, or json: one JSON object a line."),
    ] = LogFormat.text,
) -> None:
    """ragsync: scheduler, fetcher agent and embedding consumer group over Kafka, into Qdrant."""
    configure_logs((log_level or LogLevel.WARNING).value, log_format)
    if log_level is None and ctx.invoked_subcommand in LONG_RUNNING:
        # A component that runs for days says what it does; one-shot commands keep the terminal for progress bars.
        for name in OWN_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
    elif ctx.invoked_subcommand not in LONG_RUNNING:
        logging.getLogger("aiokafka").addFilter(_said_by_the_command)


def _said_by_the_command(record: logging.LogRecord) -> bool:
    """Drop aiokafka's own line about an unreachable broker: a one-shot command says it once, with the fix."""
    return not str(record.msg).startswith("Unable connect to")


def _settings() -> Settings:
    """The settings, or a `SettingsError` naming each one that cannot be read."""
    from pydantic import ValidationError

    from ragsync.settings import SettingsError, describe_invalid

    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(describe_invalid(error)) from error
    except SetupError as error:  # a check of the settings' own: still a bad setting, not a component's problem
        raise SettingsError(str(error)) from error


def _kafka_problem(settings: Settings | None) -> str:
    from ragsync.messaging.reachability import kafka_problem

    if settings is None:
        return "Kafka: no broker answered; check KAFKA_BOOTSTRAP_SERVERS"
    from ragsync.app import options  # imported when used: it loads the Kafka, gRPC and store clients

    return asyncio.run(kafka_problem(options.kafka(settings)))


def _run(main: Coroutine[Any, Any, T], settings: Settings | None = None) -> T:
    """Run `main` to completion. A broker that no client could bootstrap from is a `BrokerUnreachable` saying why,
    probed with the settings' own protocol and login: aiokafka's error says only that no server answered."""
    from aiokafka.errors import KafkaConnectionError

    try:
        return asyncio.run(main)
    except KafkaConnectionError as error:
        from ragsync.messaging.reachability import BrokerUnreachable

        raise BrokerUnreachable(_kafka_problem(settings)) from error


def _serve(component: Callable[[asyncio.Event], Awaitable[None]], settings: Settings | None = None) -> None:
    """Run a long-running component until SIGINT or SIGTERM."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await component(stop)

    _run(run(), settings)


def _service_names(names: list[str] | None) -> list[str] | None:
    """Each `--service` checked up front, as a request checks it: a name it refuses is a usage error naming the
    rule, not a traceback once the sync has started."""
    for name in names or []:
        if not re.fullmatch(SERVICE_PATTERN, name):
            raise typer.BadParameter(
                f"{name!r} is not a service name: lower-case letters, digits, '.', '_' and '-', starting with a "
                "letter or digit, at most 100 characters"
            )
    return names


def _tenant_name(tenant: str | None) -> str | None:
    if tenant is not None and not 1 <= len(tenant) <= MAX_TENANT_CHARS:
        raise typer.BadParameter(f"a tenant id has 1 to {MAX_TENANT_CHARS} characters, not {len(tenant)}")
    return tenant


MAX_TENANT_CHARS = 200  # what a sync request takes (ragsync.events.SyncRequest.tenant_id)
ServiceOption = Annotated[
    list[str] | None,
    typer.Option(help="Service to sync (repeatable). Default: all.", callback=_service_names),
]


@app.command()
def demo(
    items_per_service: Annotated[int, typer.Option(min=1, help="Records each demo service serves.")] = 200,
    embedders: Annotated[int, typer.Option(min=1, help="Embedding consumers in the group.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object at the end, nothing else.")] = False,
    query: Annotated[str, typer.Option(help="The sample semantic search run at the end.")] = SAMPLE_QUERY,
) -> None:
    """Everything on this machine: local broker, demo Coordinator, fetcher, embedders, embedded Qdrant."""
    from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator

    settings = _settings()

    async def run() -> dict[str, Any]:
        async with CoordinatorServer(DemoCoordinator(items_per_service)) as server:
            return await _one_shot(settings, server.endpoint, None, "batch", embedders, as_json, query, 3600)

    report = _run(run(), settings)
    _finish(report, as_json)


@app.command()
def sync(
    service: ServiceOption = None,
    sync_type: Annotated[SyncType, typer.Option("--type", help="Kind of sync.")] = "batch",
    embedders: Annotated[int, typer.Option(min=1)] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every run.")] = 3600,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's records (asked of the Coordinator). Default: all of them.")
    ] = None,
) -> None:
    """One-shot sync against COORDINATOR_GRPC_ENDPOINT; exits non-zero if any run failed."""
    settings = _settings()
    report = _run(_one_shot(settings, None, service, sync_type, embedders, as_json, None, timeout, tenant), settings)
    _finish(report, as_json)


async def _one_shot(
    settings: Settings,
    endpoint: str | None,
    services: list[str] | None,
    sync_type: SyncType,
    embedders: int,
    as_json: bool,
    query: str | None,
    timeout: float,
    tenant: str | None = None,
) -> dict[str, Any]:
    from ragsync.app.application import App
    from ragsync.cli.console import RunProgressBars, hits_table, summary_table
    from ragsync.cli.oneshot import one_shot_app, run_sync
    from ragsync.store import open_store

    App(settings).item_rules()  # a bad schema is one line here, not a fetcher that stops mid-run
    from ragsync.app import options  # imported when used: it loads the Kafka, gRPC and store clients

    store = open_store(options.store(settings))
    encoder = App(settings).encoder()
    try:
        async with one_shot_app(settings) as app_:
            with RunProgressBars(err) if not as_json else _NoBars() as bars:
                report = await run_sync(
                    app_,
                    store,
                    encoder,
                    services,
                    sync_type,
                    embedders,
                    endpoint,
                    timeout,
                    on_change=bars.update,
                    tenant=tenant,
                )
        if not as_json:
            out.print(summary_table(report, out.width), "")
            if query:
                vector = (await encoder.encode_async([query]))[0]
                out.print(hits_table(query, await asyncio.to_thread(store.search, vector, 5), out.width))
        return report.as_json()
    finally:
        encoder.close()
        store.close()


class _NoBars:
    def __enter__(self) -> _NoBars:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, run: Any) -> None:
        return None


def _finish(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report))
    failed = [r for r in report["runs"] if r["status"] != "succeeded"]
    for run in failed:
        status = "" if run["status"] in ("held", "superseded") else f" {run['status']}"  # its error says it
        err.print(labelled(f"run of {run['service']}{status}:", run["error"]))
    raise typer.Exit(exits.FAILED if failed else exits.OK)


@app.command()
def trigger(
    service: ServiceOption = None,
    sync_type: Annotated[SyncType, typer.Option("--type", help="Kind of sync.")] = "batch",
    since: Annotated[datetime | None, typer.Option(help="For incremental syncs: ISO-8601 time.")] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Tenant of the records. Default: DEFAULT_TENANT_ID.", callback=_tenant_name)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the requested runs as one JSON list.")] = False,
) -> None:
    """Publish sync requests to the sync-requests topic (a running fetcher picks them up)."""
    from ragsync.app.application import App
    from ragsync.messaging.sync_requests import publish_requests, sync_requests

    settings = _settings()
    from ragsync.app import options  # imported when used: it loads the Kafka, gRPC and store clients

    requests = sync_requests(options.request_defaults(settings), service, "cli", sync_type, since, tenant)

    async def run() -> None:
        app_ = App(settings)
        await app_.ensure_topics()
        async with app_.publisher() as publisher:
            await publish_requests(publisher, app_.topics, requests)

    _run(run(), settings)
    if as_json:
        fields = ("run_id", "tenant_id", "service", "sync_type")
        print(json.dumps([request.model_dump(mode="json", include=set(fields)) for request in requests]))
        return
    for request in requests:
        out.print(as_text(f"requested {request.sync_type} sync of {request.service}: run {request.run_id}"))


@app.command()
def prune(
    run_id: Annotated[str, typer.Argument(help="The held run's id (its first characters will do).")],
    confirm: Annotated[bool, typer.Option("--confirm", help="Carry out the deletion the run holds.")] = False,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to wait for an embedder to carry it out.")] = 120,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Carry out a held run's deletion, once you checked that its records really went away upstream."""
    settings = _settings()
    if not confirm:
        err.print(
            as_text(
                f"nothing deleted: add --confirm to carry out what run {run_id} holds; "
                f"`ragsync status --run-id {run_id}` shows what it would remove"
            )
        )
        raise typer.Exit(exits.SETUP)
    if settings.kafka_bootstrap_servers:
        done = _run(_confirm_on_topic(settings, run_id, timeout), settings)
    else:
        done = _confirm_here(settings, run_id)
    if as_json:
        print(json.dumps(done))
    elif done["carried_out"]:
        out.print(
            as_text(
                f"deleted {done['swept'] + done['deleted']} points of {done['service']}/{done['tenant_id']} held by "
                f"run {done['run_id']}: {done['swept']} it did not see, {done['deleted']} of records flagged deleted"
            )
        )
    else:
        err.print(
            as_text(
                f"confirmed; no embedder carried it out within {timeout:g} s: it is carried out when `ragsync "
                f"embedder` (or the next `ragsync sync`) runs; `ragsync status --run-id {done['run_id']}` shows when"
            )
        )
    raise typer.Exit(exits.OK if done["carried_out"] else exits.FAILED)


async def _confirm_on_topic(settings: Settings, prefix: str, timeout: float) -> dict[str, Any]:
    from ragsync.app.application import App
    from ragsync.runstate.deletions import PruneConfirmations, carried_out

    app_ = App(settings)
    async with app_.run_channel() as channel:
        await channel.caught_up()
        confirmations = PruneConfirmations(channel)
        run = confirmations.held_run(prefix, app_.topics.sync_runs)
        done = await confirmations.confirm(run, "cli", timeout)
        return carried_out(done or run)


def _confirm_here(settings: Settings, prefix: str) -> dict[str, Any]:
    from ragsync.runstate.deletions import HELD_FILE, HeldFile, confirm_here

    with _store(settings) as store:
        return confirm_here(store, HeldFile(settings.data_dir / HELD_FILE), prefix)


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="What to look for.")],
    service: Annotated[str | None, typer.Option(help="Only this service's points.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's points.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many hits.")] = 5,
    related: Annotated[bool, typer.Option("--related", help="Each hit's related items under it.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Semantic search in the collection; prints the top hits with scores."""
    from ragsync.app.application import App
    from ragsync.cli.console import hits_table

    settings = _settings()
    with _store(settings) as store:
        if store.count() == 0:
            err.print(as_text(f"no points in {store.collection} yet: run `ragsync sync` or `ragsync demo` first"))
            hits = []
        else:
            one_query = settings.model_copy(update={"embedding_process": "off"})  # not worth a process of its own
            hits = store.search(App(one_query).encoder().encode([text])[0], k, tenant, service)
        linked: list[list[RelatedItem]] = [_related_of(store, hit.payload) for hit in hits] if related else []
    if as_json:
        found = [{"score": h.score, **h.payload} for h in hits]
        for hit, items in zip(found, linked, strict=False):
            hit["related"] = [_related_json(item) for item in items]
        print(json.dumps(found, default=str))
    else:
        out.print(hits_table(text, hits, out.width, linked or None))


@app.command()
def related(
    item_id: Annotated[str, typer.Argument(help="The item's id, as its service names it.")],
    service: Annotated[str, typer.Option(help="The item's service.")],
    tenant: Annotated[str | None, typer.Option(help="The item's tenant. Default: DEFAULT_TENANT_ID.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """An item's related items (RELATED_EDGES=on), with their scores and texts."""
    from ragsync.cli.console import related_table
    from ragsync.store.related_edges import read_related

    settings = _settings()
    tenant_id = tenant or settings.default_tenant_id
    with _store(settings) as store:
        found = read_related(store, tenant_id, service, item_id)
    if found is None:
        err.print(
            as_text(
                f"no item {item_id!r} of {service} (tenant {tenant_id}) in {settings.qdrant_collection}: check the "
                "id, --service and --tenant, or sync the service first"
            )
        )
        raise typer.Exit(exits.FAILED)
    if not found.computed:
        err.print(
            as_text(
                f"the edges of {item_id!r} are not computed: RELATED_EDGES is off, or they are still waiting "
                "(the embedder's /status shows related_edges.waiting)"
            )
        )
    if as_json:
        print(
            json.dumps(
                {
                    "item_id": item_id,
                    "service": service,
                    "tenant_id": tenant_id,
                    "computed": found.computed,
                    "related": [_related_json(i) for i in found.items],
                }
            )
        )
    else:
        out.print(related_table(service, item_id, found.items, out.width))


@contextlib.contextmanager
def _store(settings: Settings) -> Iterator[VectorStore]:
    from ragsync.app import options  # imported when used: it loads the Kafka, gRPC and store clients
    from ragsync.store import open_store

    store = open_store(options.store(settings))
    try:
        yield store
    finally:
        store.close()


def _related_of(store: VectorStore, payload: dict[str, Any]) -> list[RelatedItem]:
    from ragsync.store.related_edges import read_related

    found = read_related(store, str(payload["tenant_id"]), str(payload["service"]), str(payload["item_id"]))
    return found.items if found else []


def _related_json(item: RelatedItem) -> dict[str, Any]:
    return {**item.edge.as_payload(), "text": item.text}


@app.command()
def coordinator(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 50051,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    items_per_service: Annotated[int, typer.Option(min=0)] = 200,
    latency_ms: Annotated[float, typer.Option(min=0, help="Added to every call.")] = 0.0,
    error_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of calls failing UNAVAILABLE.")] = 0.0,
    public_key: Annotated[Path | None, typer.Option(help="PEM public key: verify signatures.")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve TLS (with --tls-key).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM key of --tls-cert.")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(help="PEM CA: require client certificates it signed.")] = None,
    wrong_answer: Annotated[
        str | None,
        typer.Option(help="Answer wrongly, without an error: empty, cut-short (after --cut-after pages), all-deleted."),
    ] = None,
    cut_after: Annotated[int, typer.Option(min=1, help="With --wrong-answer cut-short: the last page listed.")] = 2,
) -> None:
    """The demo Coordinator: a real gRPC server with synthetic records for the demo services."""
    from ragsync.coordinator.signing import Verifier
    from ragsync.coordinator.tls import ChannelTls
    from ragsync.demo.coordinator_server import WRONG_ANSWERS, CoordinatorServer, DemoCoordinator, Faults, WrongAnswer

    if (tls_cert is None) != (tls_key is None) or (tls_client_ca is not None and tls_cert is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together; --tls-client-ca needs both")
    tls = ChannelTls(ca=tls_client_ca, cert=tls_cert, key=tls_key) if tls_cert else None
    if wrong_answer is not None and wrong_answer not in WRONG_ANSWERS:
        raise typer.BadParameter(f"--wrong-answer {wrong_answer!r}: use {', '.join(WRONG_ANSWERS)}")
    wrong = WrongAnswer(wrong_answer, cut_after) if wrong_answer else None
    verifier = Verifier.from_pem(public_key.read_bytes()) if public_key else None
    faults = Faults(latency_s=latency_ms / 1000, error_rate=error_rate)
    servicer = DemoCoordinator(items_per_service, faults, verifier, wrong)

    async def component(stop: asyncio.Event) -> None:
        async with CoordinatorServer(servicer, f"{host}:{port}", tls) as server:
            mode = "plaintext" if tls is None else "TLS" if tls.ca is None else "mutual TLS"
            err.print(f"demo Coordinator listening on {server.endpoint} ({mode})")
            await stop.wait()

    _serve(component)


@app.command()
def fetcher() -> None:
    """The fetcher agent (long-running): sync requests in, item events out."""
    from ragsync.app.application import App

    app_ = App(_settings())
    _serve(lambda stop: app_.run_fetcher(stop, serve_ops=True), app_.settings)


@app.command()
def embedder(consumers: Annotated[int, typer.Option(min=1, help="Consumers in this process.")] = 1) -> None:
    """An embedding consumer (long-running); run N of these for N consumers in the group."""
    from ragsync.app.application import App

    app_ = App(_settings())
    _serve(lambda stop: app_.run_embedders(stop, consumers, serve_ops=True), app_.settings)


@app.command()
def scheduler() -> None:
    """The scheduler and stall watchdog (long-running): sync requests on BATCH_SYNC_SCHEDULE and on start-up."""
    from ragsync.app.application import App

    app_ = App(_settings())
    _serve(lambda stop: app_.run_scheduler(stop, serve_ops=True), app_.settings)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 30,
    run_id: Annotated[str | None, typer.Option(help="Only this run.")] = None,
) -> None:
    """The sync runs, read from the sync-runs topic: status, counts, errors."""
    from ragsync.app.application import App
    from ragsync.cli.console import runs_table

    app_ = App(_settings())

    async def read() -> list[Any]:
        async with app_.ledger() as ledger:
            await ledger.caught_up()
            if run_id is not None:
                return ledger.book.starting_with(run_id)
            return ledger.book.recent(limit)

    runs = _run(read(), app_.settings)
    if as_json:
        print(json.dumps([r.summary() for r in runs]))
    elif not runs and run_id:
        s = app_.settings
        out.print(
            as_text(
                f"no run {run_id} on {app_.topics.sync_runs}: finished runs are kept {s.run_history_days:g} days and "
                f"{s.run_history_per_service} per service; `ragsync status` lists the kept ones"
            )
        )
    elif not runs:
        out.print(as_text(f"no runs yet on {app_.topics.sync_runs}: `ragsync trigger` or `ragsync sync` starts one"))
    else:
        out.print(runs_table(runs, out.width))


dead_letters_app = typer.Typer(help="What a stage could not do: list it, replay it.", no_args_is_help=True)
app.add_typer(dead_letters_app, name="dead-letters")


@dead_letters_app.command("list")
def dead_letters_list(
    run_id: Annotated[str | None, typer.Option(help="Only this run's.")] = None,
    stage: Annotated[LetterStage | None, typer.Option(help="Only this stage's.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every dead letter with its reason."""
    from ragsync.app.application import App
    from ragsync.cli.console import letters_table
    from ragsync.messaging.dead_letters import list_dead_letters

    app_ = App(_settings())
    letters = _run(list_dead_letters(app_.kafka, app_.topics, run_id, stage), app_.settings)
    if as_json:
        print(json.dumps([{"ref": s.ref, **s.letter.model_dump(mode="json")} for s in letters]))
    elif not letters:
        out.print(as_text(f"no dead letters{_of_run(run_id, stage)} on {app_.topics.dead_letters}"))
    else:
        out.print(letters_table(letters))


def _of_run(run_id: str | None, stage: str | None) -> str:
    return (f" of run {run_id}" if run_id else "") + (f" from the {stage}" if stage else "")


@dead_letters_app.command("replay")
def dead_letters_replay(
    run_id: Annotated[str | None, typer.Option(help="Only this run's.")] = None,
    stage: Annotated[LetterStage | None, typer.Option(help="Only this stage's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was replayed as one JSON object.")] = False,
) -> None:
    """Re-submit dead-lettered messages to the topic they came from (after fixing the cause)."""
    from ragsync.app.application import App
    from ragsync.messaging.dead_letters import list_dead_letters, replay

    app_ = App(_settings())

    async def run() -> tuple[int, list[Any]]:
        letters = await list_dead_letters(app_.kafka, app_.topics, run_id, stage)
        async with app_.publisher() as publisher:
            return await replay(publisher, app_.topics, letters)

    sent, skipped = _run(run(), app_.settings)
    if as_json:
        print(json.dumps({"replayed": sent, "not_replayable": [stored.ref for stored in skipped]}))
        return
    if not sent and not skipped:
        out.print(as_text(f"nothing to replay: no dead letters{_of_run(run_id, stage)} on {app_.topics.dead_letters}"))
        return
    out.print(f"replayed {sent} dead letter(s)")
    if skipped:
        err.print(
            f"{len(skipped)} cannot be replayed: records the Coordinator sent that never became an item "
            "(no id, too large, too deep); fix them upstream and sync their service again"
        )


@app.command()
def broker(port: Annotated[int, typer.Option(help="Port to listen on.")] = 9092) -> None:
    """The local Kafka-protocol broker (memory only), to run the components separately on one machine."""
    from ragsync.messaging.local_broker import BROKER_LOG, LocalBroker

    local = LocalBroker(port, log=_settings().data_dir / BROKER_LOG)
    local.start()
    err.print(f"local broker listening on {local.bootstrap_servers} (memory only); Ctrl-C stops it")

    async def component(stop: asyncio.Event) -> None:
        waiter = asyncio.create_task(local.wait())
        await asyncio.wait([waiter, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)

    try:
        _serve(component)
    finally:
        local.stop()
