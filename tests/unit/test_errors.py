"""One root: every error ragsync defines is a `RagsyncError` on exactly one branch, `SetupError` or `RunError`, and
the command line maps each branch to its exit code and one line."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import io
import pkgutil
from typing import Any

import pytest
import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.protocol.admin import CreateTopicsResponse_v1
from rich.console import Console
from typer.main import get_command

from ragsync.app.options import kafka as kafka_options
from ragsync.cli import exits
from ragsync.cli.commands import CommandLine
from ragsync.errors import RagsyncError, Refused, RunError, SetupError
from ragsync.messaging.kafka import TopicBehind, read_to_end
from ragsync.messaging.reachability import BrokerUnreachable
from ragsync.messaging.topics import check_created
from ragsync.operations.supervision import StageCrashLoopError
from ragsync.runstate.runstate_errors import RunTimeoutError
from ragsync.settings import Settings, SettingsError
from ragsync.store import IndexBuildError, StoreError

PACKAGES = ("ragsync", "ragsync.streams", "ragsync.producers")
# Generated gRPC stubs define no errors of ours; importing __main__ would run the command line.
SKIPPED = ("ragsync.proto", "ragsync.__main__")
BRANCHES = (SetupError, RunError)


def _modules() -> list[str]:
    names = set(PACKAGES)
    for package in PACKAGES:
        # The stages install under ragsync from folders of their own: a walk of ragsync's folder does not see them.
        path = importlib.import_module(package).__path__
        names |= {module.name for module in pkgutil.walk_packages(path, f"{package}.")}
    return sorted(name for name in names if not name.startswith(SKIPPED))


def _defined_errors() -> list[type[BaseException]]:
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        found += [
            value
            for value in vars(module).values()
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name
        ]
    return found


def test_every_error_defined_in_the_namespace_is_on_exactly_one_branch_of_the_root() -> None:
    errors = _defined_errors()
    names = {error.__name__ for error in errors}
    # The walk must see the errors of the core, the subpackages and the stages, or it would pass on nothing.
    assert {"SetupError", "StoreError", "IndexBuildError", "CoordinatorError", "ScheduleError", "ItemError"} <= names
    outside = [f"{e.__module__}.{e.__qualname__}" for e in errors if not issubclass(e, RagsyncError)]
    assert not outside, f"errors that are no RagsyncError: {outside}"
    wrong = [
        f"{e.__module__}.{e.__qualname__} is under {[b.__name__ for b in BRANCHES if issubclass(e, b)]}"
        for e in errors
        if e not in (RagsyncError, *BRANCHES) and sum(issubclass(e, branch) for branch in BRANCHES) != 1
    ]
    assert not wrong, "errors not under exactly one of SetupError, RunError:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (SetupError("QDRANT_URL is wrong"), 2, "cannot start: QDRANT_URL is wrong"),
        (StoreError("the folder is held"), 2, "cannot start: the folder is held"),
        (SettingsError("KAFKA_PARTITIONS='many': not an integer"), 2, "bad setting: KAFKA_PARTITIONS='many': not an"),
        (BrokerUnreachable("Kafka at h:1: connection refused"), 2, "cannot reach Kafka at h:1: connection refused"),
        (RunError("page 3 failed"), 1, "failed: page 3 failed"),
        (IndexBuildError("building failed"), 1, "failed: building failed"),
        (Refused("the run holds nothing"), 1, "refused: the run holds nothing"),
        (RunTimeoutError([], 5), 1, "not finished: 0 run(s) did not finish within 5s"),
        (TopicBehind("t.sync-runs", 30), 1, "failed: could not read topic t.sync-runs to its end in 30 s"),
        (StageCrashLoopError("the fetcher's stage crashed 5 times"), 3, "stopping: the fetcher's stage crashed 5"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_the_command_line_maps_each_error_to_its_exit_code_and_one_line(
    error: RagsyncError, code: int, line: str
) -> None:
    assert exits.exit_code(error) == code
    printed = io.StringIO()
    with pytest.raises(SystemExit) as ended:
        exits.end(error, Console(file=printed, width=30, emoji=False))
    assert ended.value.code == code
    said = printed.getvalue()
    assert said.startswith(line) and said.count("\n") == 1  # one line, however narrow the terminal


def test_the_branches_exit_2_for_setup_and_1_for_run_time() -> None:
    assert exits.exit_code(SetupError("x")) == exits.SETUP == 2
    assert exits.exit_code(RunError("x")) == exits.FAILED == 1


def test_an_error_a_command_raises_ends_it_in_one_line_and_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    commands = typer.Typer(cls=CommandLine)

    @commands.callback()
    def group() -> None:
        """A group, as `ragsync` is."""

    @commands.command()
    def start() -> None:
        raise SetupError("QDRANT_PATH is held by another process")

    @commands.command()
    def run() -> None:
        raise RunError("the Coordinator answered UNAVAILABLE")

    for name, code, line in (
        ("start", 2, "cannot start: QDRANT_PATH is held by another process"),
        ("run", 1, "failed: the Coordinator answered UNAVAILABLE"),
    ):
        with pytest.raises(SystemExit) as ended:
            get_command(commands).main([name], prog_name="ragsync")
        assert ended.value.code == code
        assert capsys.readouterr().err == line + "\n"


def test_a_topic_the_broker_refused_to_create_is_one_error_naming_it_and_what_to_check() -> None:
    options = kafka_options(Settings(_env_file=None, kafka_partitions=6, kafka_replication_factor=3))
    refused = ("r.sync-runs", 38, "Replication factor: 3 larger than available brokers: 1.")
    answer = CreateTopicsResponse_v1(topic_errors=[("r.items", 36, ""), refused])
    with pytest.raises(SetupError) as raised:
        check_created(answer, options)
    message = str(raised.value)
    assert message.startswith("Kafka refused to create topic 'r.sync-runs' (InvalidReplicationFactorError: Replication")
    assert "replication factor 3" in message and "KAFKA_REPLICATION_FACTOR" in message
    check_created(CreateTopicsResponse_v1(topic_errors=[("r.items", 0, ""), ("r.sync-runs", 36, "")]), options)


class _LeaderlessConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """A partition whose broker never answers a fetch (no leader): nothing comes, nothing is known of its end."""

    def __init__(self) -> None:
        super().__init__(bootstrap_servers="unused:9092")

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, partitions: list[TopicPartition]) -> None:
        return None

    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool:
        return True

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0, **_: Any) -> dict[Any, Any]:
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    def highwater(self, partition: TopicPartition) -> int | None:
        return None


async def test_a_topic_read_to_its_end_that_never_ends_is_one_error_naming_it_not_a_bare_timeout() -> None:
    with pytest.raises(TopicBehind, match=r"could not read topic t.dead-letters to its end in 0 s: a partition"):
        await read_to_end(_LeaderlessConsumer(), "t.dead-letters", timeout=0.3)
