"""The Kafka and Coordinator security settings: checked when read, and given to every client ragsync makes."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from ragsync.app import options
from ragsync.app.application import App
from ragsync.messaging.kafka import Publisher, make_consumer, security_options
from ragsync.settings import Settings, describe_invalid
from ragsync.streams.fetcher import faust_credentials
from tests.certificates import TestCa


def _sasl_ssl(tmp_path: Path) -> Settings:
    ca = TestCa(tmp_path / "ca")
    return Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=ca.pem,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="ragsync",
        kafka_sasl_password="pa55word",
        _env_file=None,
    )


async def test_every_kafka_client_gets_the_protocol_the_tls_context_and_the_login(tmp_path: Path) -> None:
    settings = _sasl_ssl(tmp_path)
    clients = {
        "consumer": make_consumer(options.kafka(settings, "127.0.0.1:9"), "items", group_id="g")._client,
        "run ledger": make_consumer(options.kafka(settings, "127.0.0.1:9"), group_id=None, fetch_max_mb=1)._client,
        "producer": Publisher.to(options.kafka(settings, "127.0.0.1:9"))._producer.client,
    }
    for name, client in clients.items():
        seen = (client._security_protocol, client._sasl_mechanism, client._sasl_plain_username)
        assert seen == ("SASL_SSL", "SCRAM-SHA-512", "ragsync"), name
        assert client._sasl_plain_password == "pa55word" and client._ssl_context is not None, name
    admin = security_options(options.kafka(settings))  # what ensure_topics gives its admin client
    assert admin["security_protocol"] == "SASL_SSL" and admin["sasl_plain_password"] == "pa55word"
    faust = faust_credentials(options.kafka(settings))
    assert (faust.protocol.value, faust.mechanism.value, faust.username) == ("SASL_SSL", "SCRAM-SHA-512", "ragsync")
    assert faust.ssl_context is not None


def test_plaintext_is_the_default_and_gives_faust_no_credentials() -> None:
    settings = Settings(_env_file=None)
    assert security_options(options.kafka(settings)) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(options.kafka(settings)) is None


async def test_coordinator_tls_turns_on_with_a_ca(tmp_path: Path) -> None:
    # async: the client's grpc.aio channel takes the running loop, not whatever loop an earlier test left current
    ca = TestCa(tmp_path / "ca")
    client = ca.issue("ragsync")
    settings = Settings(
        coordinator_tls_ca=ca.pem, coordinator_tls_cert=client.cert, coordinator_tls_key=client.key, _env_file=None
    )
    tls = App(settings).coordinator_client().tls
    assert tls is not None and (tls.ca, tls.cert, tls.key) == (ca.pem, client.cert, client.key)
    assert App(Settings(_env_file=None)).coordinator_client().tls is None


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME and"),
        ({"kafka_ssl_certfile": "{ca}"}, "KAFKA_SSL_CERTFILE is set but KAFKA_SSL_KEYFILE is not"),
        ({"kafka_ssl_cafile": "/nowhere/ca.pem"}, "KAFKA_SSL_CAFILE='/nowhere/ca.pem': no such file"),
        (
            {"coordinator_tls_cert": "{ca}", "coordinator_tls_key": "{ca}"},
            "COORDINATOR_TLS_CERT needs COORDINATOR_TLS_CA",
        ),
        ({"kafka_security_protocol": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS': Input should be 'PLAINTEXT', 'SSL'"),
    ],
)
def test_an_incomplete_security_setting_is_one_line_naming_it(given: dict[str, str], said: str, tmp_path: Path) -> None:
    ca = str(TestCa(tmp_path / "ca").pem)
    with pytest.raises(ValidationError) as invalid:
        Settings(**{k: v.format(ca=ca) for k, v in given.items()}, _env_file=None)  # type: ignore[arg-type]
    assert said in describe_invalid(invalid.value)


def test_secrets_never_show_in_the_settings_or_their_errors(tmp_path: Path) -> None:
    settings = _sasl_ssl(tmp_path)
    assert "pa55word" not in repr(settings) + settings.model_dump_json() + str(settings)
    with pytest.raises(ValidationError) as invalid:
        Settings(kafka_sasl_password=123456789, _env_file=None)
    assert "123456789" not in describe_invalid(invalid.value)
