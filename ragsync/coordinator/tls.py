"""TLS of the Coordinator's gRPC channel: PEM files read once, turned into client or server credentials."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True, kw_only=True)
class ChannelTls:
    """The PEM files of one side of a TLS channel. `ca` verifies the other side: the server's certificate on a
    client; on a server, given, it requires and verifies client certificates (mutual TLS)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def client_credentials(self) -> grpc.ChannelCredentials:
        """A client's credentials: trust `ca`; present `cert`/`key` when the server asks (mutual TLS)."""
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca), private_key=_read(self.key), certificate_chain=_read(self.cert)
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        """A server's credentials: serve `cert`/`key`; with `ca`, require client certificates it signed."""
        if self.cert is None or self.key is None:
            raise ValueError("a TLS server needs a certificate and its key")
        pair = [(self.key.read_bytes(), self.cert.read_bytes())]
        if self.ca is None:
            return grpc.ssl_server_credentials(pair)
        return grpc.ssl_server_credentials(pair, root_certificates=self.ca.read_bytes(), require_client_auth=True)


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None
