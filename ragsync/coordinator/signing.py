"""Signed calls: ECDSA P-256 / SHA-256 over the digest of the request, exactly as the Coordinator checks it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ragsync.coordinator.coordinator_errors import SigningKeyError

SERVICE_NAME = "rag-service"
SIGNATURE_PREFIX = "educoreai-rag-service-"


def canonical_payload(tenant_id: str, user_id: str, query_text: str, timestamp_ms: int) -> str:
    """The compact JSON that Node's `JSON.stringify` produces for the signed object, keys in contract order."""
    signed = {
        "tenant_id": tenant_id,
        "user_id": user_id,
        "query_text": query_text,
        "requester_service": SERVICE_NAME,
        "timestamp": timestamp_ms,
    }
    return json.dumps(signed, separators=(",", ":"), ensure_ascii=False)


def signed_message(tenant_id: str, user_id: str, query_text: str, timestamp_ms: int) -> bytes:
    """`educoreai-rag-service-` + lowercase hex SHA-256 of the canonical payload."""
    payload = canonical_payload(tenant_id, user_id, query_text, timestamp_ms)
    digest = hashlib.sha256(payload.encode("utf-8", errors="surrogatepass")).hexdigest()
    return (SIGNATURE_PREFIX + digest).encode("ascii")


def _decode_pem(value: str, variable: str) -> bytes:
    try:
        pem = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise SigningKeyError(f"{variable} is not valid base64 ({error}); set it to base64 of a PEM key") from error
    if b"-----BEGIN" not in pem:
        raise SigningKeyError(f"{variable} decodes to {len(pem)} bytes that are not a PEM key (no -----BEGIN line)")
    return pem


class Signer:
    """Signs calls with an EC P-256 private key."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise SigningKeyError(f"the signing key is on curve {private_key.curve.name}; the Coordinator needs P-256")
        self._key = private_key

    @classmethod
    def from_env_value(cls, value: str, variable: str = "RAG_PRIVATE_KEY") -> Signer:
        """Load from the environment's form: base64 of a PEM private key. Any problem is a `SigningKeyError`."""
        pem = _decode_pem(value, variable)
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as error:
            raise SigningKeyError(f"{variable} holds a PEM block that is not a usable private key: {error}") from error
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SigningKeyError(f"{variable} holds a {type(key).__name__}; the Coordinator needs an EC P-256 key")
        return cls(key)

    def sign(self, message: bytes) -> str:
        """base64 of the DER-encoded ECDSA signature of `message`."""
        return base64.b64encode(self._key.sign(message, ec.ECDSA(hashes.SHA256()))).decode("ascii")

    def public_key_pem(self) -> bytes:
        """The matching public key, PEM-encoded (to configure a Coordinator that verifies)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class Verifier:
    """Checks signatures as the Coordinator does (used by the demo Coordinator and by tests)."""

    def __init__(self, public_key: ec.EllipticCurvePublicKey) -> None:
        self._key = public_key

    @classmethod
    def from_pem(cls, pem: bytes) -> Verifier:
        """Load an EC public key from PEM bytes."""
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise SigningKeyError(f"the verification key is a {type(key).__name__}, not an EC public key")
        return cls(key)

    def verify(self, signature_b64: str, message: bytes) -> bool:
        """Whether `signature_b64` is a valid signature of `message`."""
        try:
            self._key.verify(base64.b64decode(signature_b64), message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True
