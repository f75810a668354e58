"""No traceback reaches a person: every command, run as a user runs it, answers each expected condition (a fresh
broker, an unreachable broker, an empty or missing store, an unknown run id, a malformed setting) with a plain
answer and exit code 0, or with one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragsync.messaging.local_broker import LocalBroker, free_port

COMMANDS = {
    "status": ["status"],
    "dead-letters list": ["dead-letters", "list"],
    "dead-letters replay": ["dead-letters", "replay"],
    "search": ["search", "refund"],
    "trigger": ["trigger", "--service", "payment-service"],
    "sync": ["sync", "--service", "payment-service", "--timeout", "30"],
    "demo": ["demo", "--items-per-service", "5"],
    "fetcher": ["fetcher"],
    "embedder": ["embedder"],
    "scheduler": ["scheduler"],
}
UNREACHABLE_BROKER = "cannot reach Kafka at 127.0.0.1:{port}: connection refused; start the broker"

# (condition, command, extra arguments, exit code, what the answer says)
CASES = [
    *[
        ("fresh broker", command, [], 0, answer)
        for command, answer in (
            ("status", "no runs yet on"),
            ("dead-letters list", "no dead letters on"),
            ("dead-letters replay", "nothing to replay: no dead letters on"),
            ("trigger", "requested batch sync of payment-service"),
        )
    ],
    *[
        ("unreachable broker", command, [], 2, UNREACHABLE_BROKER)
        for command in COMMANDS
        if command != "search"  # needs no broker
    ],
    ("missing store", "search", [], 0, "no points in ragsync yet: run `ragsync sync` or `ragsync demo` first"),
    ("unreachable store", "search", [], 2, "cannot reach Qdrant at http://127.0.0.1:{port}"),
    ("unreachable store", "embedder", [], 2, "cannot reach Qdrant at http://127.0.0.1:{port}"),
    ("unknown run id", "status", ["--run-id", "nope"], 0, "no run nope on"),
    ("unknown run id", "dead-letters list", ["--run-id", "nope"], 0, "no dead letters of run nope on"),
    ("unknown run id", "dead-letters replay", ["--run-id", "nope"], 0, "nothing to replay: no dead letters of run"),
    *[
        ("malformed setting", command, [], 2, "bad setting: KAFKA_PARTITIONS='many': Input should be a valid integer")
        for command in COMMANDS
    ],
]


@pytest.fixture(scope="module")
def fresh_broker() -> Iterator[str]:
    """A broker of this module's own, so that `fresh` means no topics of any prefix."""
    with LocalBroker() as broker:
        yield broker.bootstrap_servers


def _environment(condition: str, fresh_broker: str, tmp_path: Path, port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "KAFKA_BOOTSTRAP_SERVERS": fresh_broker,
        "KAFKA_TOPIC_PREFIX": f"p{uuid.uuid4().hex[:8]}.",
        "QDRANT_PATH": str(tmp_path / "missing" / "qdrant"),
        "DATA_DIR": str(tmp_path / "data"),
        "OPS_PORT": str(free_port()),
        "COLUMNS": "80",
    }
    env.pop("QDRANT_URL", None)
    if condition == "unreachable broker":
        env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{port}"
    elif condition == "unreachable store":
        env["QDRANT_URL"] = f"http://127.0.0.1:{port}"
    elif condition == "malformed setting":
        env["KAFKA_PARTITIONS"] = "many"
    return env


@pytest.mark.parametrize(
    ("condition", "command", "extra", "code", "answer"), CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES]
)
def test_each_command_answers_each_condition_plainly(
    condition: str, command: str, extra: list[str], code: int, answer: str, fresh_broker: str, tmp_path: Path
) -> None:
    port = free_port()
    env = _environment(condition, fresh_broker, tmp_path, port)
    result = subprocess.run(
        [sys.executable, "-m", "ragsync", *COMMANDS[command], *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    said = result.stdout + result.stderr
    assert "Traceback" not in said, said[-3000:]
    assert result.returncode == code, said[-3000:]
    assert answer.format(port=port) in said, said[-3000:]
    if code == 2:
        # One line: the components' own start-up log lines come first, with their timestamps.
        plain = [line for line in result.stderr.splitlines() if line.strip() and not line[:4].isdigit()]
        assert len(plain) == 1, result.stderr[-3000:]


# (arguments, the start of the one line said): each value outside an option's fixed set, and the other usage errors.
BAD_OPTIONS = [
    (
        ["--log-level", "verbose", "status"],
        "ragsync: Invalid value for '--log-level': 'verbose' is not one of 'debug', 'info', 'warning', 'error'.",
    ),
    (
        ["sync", "--type", "hourly"],
        "ragsync sync: Invalid value for '--type': 'hourly' is not one of 'batch', 'daily',",
    ),
    (["trigger", "--type", "weekly"], "ragsync trigger: Invalid value for '--type': 'weekly' is not one of 'batch',"),
    (
        ["dead-letters", "list", "--stage", "pruner"],
        "ragsync dead-letters list: Invalid value for '--stage': 'pruner' is not one of 'fetcher', 'embedder'.",
    ),
    (["dead-letters", "replay", "--stage", "x"], "ragsync dead-letters replay: Invalid value for '--stage': 'x'"),
    (["status", "--limit", "0"], "ragsync status: Invalid value for '--limit'"),
    (["search"], "ragsync search: Missing argument 'text'."),
    (["statu"], "ragsync: No such command 'statu'."),
]


@pytest.mark.parametrize(("args", "said"), BAD_OPTIONS, ids=[" ".join(args) for args, _ in BAD_OPTIONS])
def test_a_bad_option_is_one_line_naming_the_accepted_values_and_exit_code_2(
    args: list[str], said: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ragsync", *args],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr[-3000:]
    [line] = result.stderr.splitlines()
    assert line.startswith(said), line
