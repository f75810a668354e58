"""Secured connections for real: Kafka over TLS (Debian's stunnel in front of the local broker, which advertises
the TLS port), the Coordinator over TLS and mutual TLS (the demo Coordinator with a CA made by the test), and the
errors a person gets for a wrong CA, a certificate for another host, or a plaintext client on a TLS listener."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from ragsync.app.application import App
from ragsync.app.health import runs_status
from ragsync.coordinator import CoordinatorClient, CoordinatorError, CoordinatorOptions
from ragsync.coordinator.request import CallerIdentity, page_request
from ragsync.coordinator.signing import Verifier
from ragsync.coordinator.tls import ChannelTls
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator
from ragsync.messaging.local_broker import LocalBroker, free_port
from ragsync.model.encoder import TextEncoder
from ragsync.settings import Settings
from ragsync.store import VectorStore
from tests.certificates import TestCa
from tests.integration.test_correctness import pipeline

PUBLIC = serialization.PublicFormat.SubjectPublicKeyInfo
STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")


@dataclass(frozen=True)
class TlsBroker:
    """A broker reachable only over TLS at `bootstrap`, with the CA that signed its certificate."""

    bootstrap: str
    ca: TestCa
    elsewhere: str  # the same broker behind a certificate for example.org only


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    if STUNNEL is None:
        pytest.skip("stunnel is not installed (Debian: apt-get install stunnel4); `make install` installs it as root")
    folder = tmp_path_factory.mktemp("tls-broker")
    ca = TestCa(folder / "ca")
    server, elsewhere = ca.issue("broker"), ca.issue("elsewhere", ("example.org",))
    tls_port, elsewhere_port = free_port(), free_port()
    with LocalBroker(advertised=f"127.0.0.1:{tls_port}") as broker:
        config = folder / "stunnel.conf"
        config.write_text(
            f"foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls_port}\nconnect = 127.0.0.1:{broker.port}\n"
            f"cert = {server.cert}\nkey = {server.key}\n"
            f"[elsewhere]\naccept = 127.0.0.1:{elsewhere_port}\nconnect = 127.0.0.1:{broker.port}\n"
            f"cert = {elsewhere.cert}\nkey = {elsewhere.key}\n"
        )
        proxy = subprocess.Popen([STUNNEL, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(tls_port)
            yield TlsBroker(f"127.0.0.1:{tls_port}", ca, f"127.0.0.1:{elsewhere_port}")
        finally:
            proxy.terminate()
            proxy.wait(timeout=5)


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def _secured(settings: Settings, broker: TlsBroker, **more: object) -> Settings:
    update = {
        "kafka_bootstrap_servers": broker.bootstrap,
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": broker.ca.pem,
        **more,
    }
    return settings.model_copy(update=update)


async def test_a_full_sync_runs_over_tls_to_kafka_and_to_the_coordinator_with_mutual_tls_and_keeps_secrets(
    settings: Settings,
    store: VectorStore,
    encoder: TextEncoder,
    tls_broker: TlsBroker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ca = TestCa(tmp_path / "coordinator-ca")
    server, client = ca.issue("coordinator"), ca.issue("ragsync")
    signing = ec.generate_private_key(ec.SECP256R1())
    pem = signing.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    secrets = {
        "RAG_PRIVATE_KEY": base64.b64encode(pem).decode(),
        "KAFKA_SASL_PASSWORD": "kafka-password-never-logged",
        "QDRANT_API_KEY": "qdrant-key-never-logged",
        "ADMIN_TOKEN": "admin-token-never-logged",
    }
    settings = _secured(
        settings,
        tls_broker,
        coordinator_tls_ca=ca.pem,
        coordinator_tls_cert=client.cert,
        coordinator_tls_key=client.key,
        kafka_sasl_username="ragsync",
        **{name.lower(): SecretStr(value) for name, value in secrets.items()},
    )
    caplog.set_level(logging.DEBUG)
    tls = ChannelTls(
        ca=ca.pem, cert=server.cert, key=server.key
    )  # the server requires a client certificate from this CA
    verifier = Verifier.from_pem(signing.public_key().public_bytes(serialization.Encoding.PEM, PUBLIC))
    app = App(settings)
    async with (
        CoordinatorServer(DemoCoordinator(30, verifier=verifier), tls=tls) as coordinator,
        pipeline(app, coordinator.endpoint, store, encoder) as running,
    ):
        run = await running.sync("payment-service")
        shown = json.dumps(runs_status(running.ledger)) + repr(settings) + settings.model_dump_json()
    assert (run.status, run.items_upserted) == ("succeeded", 30)
    assert store.count() == 30 and coordinator.servicer.calls  # signed calls, verified by the Coordinator
    said = caplog.text + shown
    for name, value in [*secrets.items(), ("the client key", client.key.read_text().splitlines()[1])]:
        assert value not in said, f"{name} appears in the logs or /status"


def _ragsync(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "ragsync", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("case", "answer"),
    [
        ("wrong CA", "its TLS certificate was refused ("),
        ("plaintext client", "the listener speaks TLS; set KAFKA_SECURITY_PROTOCOL=SSL"),
        ("another host", "its TLS certificate is not for '127.0.0.1' ("),
    ],
)
def test_a_tls_mistake_with_kafka_is_one_line_naming_the_setting(
    case: str, answer: str, tls_broker: TlsBroker, tmp_path: Path
) -> None:
    bootstrap = tls_broker.elsewhere if case == "another host" else tls_broker.bootstrap
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATA_DIR": str(tmp_path)}
    if case == "another host":
        env |= {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tls_broker.ca.pem)}
    if case == "wrong CA":
        env |= {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(TestCa(tmp_path / "other", "another CA").pem)}
    started = time.monotonic()
    result = _ragsync(["status"], tmp_path, **env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"cannot reach Kafka at {bootstrap}: ") and answer in line, line
    assert time.monotonic() - started < 30


def _calls(endpoint: str, tls: ChannelTls | None) -> CoordinatorOptions:
    """Two quick attempts: a TLS failure is told apart from a retryable one by how many were made."""
    return CoordinatorOptions(endpoint=endpoint, max_attempts=2, backoff_initial=0.05, backoff_max=0.1, tls=tls)


async def test_coordinator_tls_mistakes_name_the_setting_and_fail_at_once(tmp_path: Path) -> None:
    ca, other = TestCa(tmp_path / "ca"), TestCa(tmp_path / "other", "other CA")
    server, elsewhere, client = ca.issue("coordinator"), ca.issue("elsewhere", ("example.org",)), ca.issue("client")
    request = page_request(CallerIdentity(), "payment-service", "batch", 1, 5)
    cases = [  # served certificate, CA required of clients, the client's TLS, the hint, the attempts made
        (server, None, ChannelTls(ca=other.pem), "set COORDINATOR_TLS_CA to the CA that signed it", "(not retryable)"),
        (elsewhere, None, ChannelTls(ca=ca.pem), "use a name it holds in COORDINATOR_GRPC_ENDPOINT", "(not retryable)"),
        (server, None, None, "if the Coordinator serves TLS, set COORDINATOR_TLS_CA", "after 2 attempts"),
        (server, ca.pem, ChannelTls(ca=ca.pem), "set COORDINATOR_TLS_CERT and COORDINATOR_TLS_KEY", "after 2 attempts"),
    ]
    for served, client_ca, tls, hint, attempts in cases:
        served_tls = ChannelTls(ca=client_ca, cert=served.cert, key=served.key)
        async with (
            CoordinatorServer(DemoCoordinator(5), tls=served_tls) as coordinator,
            CoordinatorClient(_calls(coordinator.endpoint, tls)) as calls,
        ):
            with pytest.raises(CoordinatorError) as failed:
                await asyncio.wait_for(calls.route(request, 10, "payment-service", 1), 10)
        assert hint in str(failed.value) and attempts in str(failed.value), str(failed.value)
    async with (  # and the right ones work, mutual TLS included
        CoordinatorServer(
            DemoCoordinator(5), tls=ChannelTls(ca=ca.pem, cert=server.cert, key=server.key)
        ) as coordinator,
        CoordinatorClient(
            CoordinatorOptions(
                endpoint=coordinator.endpoint, tls=ChannelTls(ca=ca.pem, cert=client.cert, key=client.key)
            )
        ) as calls,
    ):
        response = await calls.route(request, 10, "payment-service", 1)
    assert response.envelope_json


async def test_a_qdrant_server_refusing_the_key_is_one_line_without_the_key(tmp_path: Path) -> None:
    """A server that answers every call 401, as Qdrant does for a wrong QDRANT_API_KEY."""

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"status": {"error": "Must provide an API key"}}, status=401)

    server = web.Application()
    server.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(server)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        env = {"QDRANT_URL": f"http://127.0.0.1:{port}", "QDRANT_API_KEY": "wrong-key-never-shown"}
        result = await asyncio.to_thread(_ragsync, ["search", "refund"], tmp_path, **env)
    finally:
        await runner.cleanup()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    said = [line for line in result.stderr.splitlines() if line.strip()]
    warning, line = said  # the key goes over plain http here: said once, as a log line
    assert warning.endswith(
        f"QDRANT_API_KEY is sent in clear text to http://127.0.0.1:{port}: use an https:// QDRANT_URL"
    )
    assert line == f"cannot start: Qdrant at http://127.0.0.1:{port} answered 401 Unauthorized: check QDRANT_API_KEY"
    assert "wrong-key-never-shown" not in result.stdout + result.stderr
