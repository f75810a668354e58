"""Why a broker cannot be reached, in words a person can act on. One connection to the first bootstrap server,
made with the same protocol, TLS context and login as every client, has its failure named with the setting to
change: aiokafka's own bootstrap error only says that no server answered."""

from __future__ import annotations

import asyncio
import ssl

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError

from ragsync.errors import SetupError
from ragsync.messaging.kafka import KafkaOptions, security_options

PROBE_TIMEOUT_S = 10.0


class BrokerUnreachable(SetupError):
    """No client could bootstrap from the broker at start-up (aiokafka's own error says only that). The message
    is `kafka_problem`'s: the broker's address, why it cannot be reached, and the setting to change."""


async def kafka_problem(kafka: KafkaOptions) -> str:
    """What keeps clients from the broker at the first bootstrap server, and what to change."""
    host, _, port = kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    where = f"Kafka at {host}:{port}"
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            connection = await create_conn(host, int(port), **security_options(kafka))
    except ssl.SSLCertVerificationError as error:
        return _certificate_refused(where, host, error)
    except ssl.SSLError as error:
        return f"{where}: the TLS handshake failed ({error.reason}); is the listener TLS? check KAFKA_SECURITY_PROTOCOL"
    except TimeoutError:
        return f"{where}: no answer within {PROBE_TIMEOUT_S:.0f} s; check KAFKA_BOOTSTRAP_SERVERS and the network"
    except ConnectionRefusedError:
        return (
            f"{where}: connection refused; start the broker (`ragsync broker` runs one here) or fix "
            "KAFKA_BOOTSTRAP_SERVERS (unset, `demo` and `sync` start their own)"
        )
    except OSError as error:
        return f"{where}: {error.strerror or error}; check KAFKA_BOOTSTRAP_SERVERS and the network"
    except (KafkaError, KeyError, ValueError) as error:  # aiokafka's SCRAM raises KeyError/ValueError on refusal
        return await _refused_after_connecting(where, kafka, host, int(port), error)
    connection.close()
    return f"{where}: one connection works, but the clients could not bootstrap; check KAFKA_BOOTSTRAP_SERVERS"


def _certificate_refused(where: str, host: str, error: ssl.SSLCertVerificationError) -> str:
    if "mismatch" in str(error.verify_message).lower():
        return (
            f"{where}: its TLS certificate is not for {host!r} ({error.verify_message}); connect by a name "
            "the certificate holds (KAFKA_BOOTSTRAP_SERVERS)"
        )
    return (
        f"{where}: its TLS certificate was refused ({error.verify_message}); set KAFKA_SSL_CAFILE to the CA "
        "that signed it"
    )


async def _refused_after_connecting(where: str, kafka: KafkaOptions, host: str, port: int, error: Exception) -> str:
    """The broker took the connection and then closed it: a refused login, or a TLS listener spoken to in
    plaintext."""
    protocol = kafka.security_protocol
    if protocol.startswith("SASL"):
        return (
            f"{where}: the broker refused the {kafka.sasl_mechanism} login of "
            f"{kafka.sasl_username!r} ({type(error).__name__}); check KAFKA_SASL_USERNAME, "
            "KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
        )
    if not protocol.endswith("SSL") and await _speaks_tls(host, port):
        return f"{where}: the listener speaks TLS; set KAFKA_SECURITY_PROTOCOL=SSL (or SASL_SSL) and KAFKA_SSL_CAFILE"
    return f"{where}: the connection was closed ({error}); check KAFKA_SECURITY_PROTOCOL"


async def _speaks_tls(host: str, port: int) -> bool:
    """Whether a TLS handshake succeeds at host:port (the certificate is not checked: this only names the problem)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            _, writer = await asyncio.open_connection(host, port, ssl=context)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
