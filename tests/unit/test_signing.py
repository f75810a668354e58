import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ragsync.coordinator.coordinator_errors import SigningKeyError
from ragsync.coordinator.signing import Signer, canonical_payload, signed_message


def _env_value(key: object) -> str:
    pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return base64.b64encode(pem).decode()


def test_canonical_payload_is_node_json_stringify_in_contract_order() -> None:
    text = canonical_payload("rag-system", "system", "sync_payment-service_batch_page_1", 1700000000123)
    assert text == (
        '{"tenant_id":"rag-system","user_id":"system","query_text":"sync_payment-service_batch_page_1",'
        '"requester_service":"rag-service","timestamp":1700000000123}'
    )


def test_canonical_payload_keeps_non_ascii_and_escapes_quotes_like_node() -> None:
    # JSON.stringify writes non-ASCII as is and escapes quotes and control characters.
    text = canonical_payload("טננט", 'u"1', "ä\n", 1)
    assert (
        text
        == '{"tenant_id":"טננט","user_id":"u\\"1","query_text":"ä\\n","requester_service":"rag-service","timestamp":1}'
    )


def test_signed_message_is_prefix_and_hex_sha256() -> None:
    payload = canonical_payload("t", "u", "q", 5)
    expected = "educoreai-rag-service-" + hashlib.sha256(payload.encode()).hexdigest()
    assert signed_message("t", "u", "q", 5) == expected.encode()


def test_signature_verifies_with_the_public_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signer = Signer.from_env_value(_env_value(key))
    message = signed_message("rag-system", "system", "q", 1234)
    signature = base64.b64decode(signer.sign(message))
    key.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))  # raises if invalid


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("not base64 !!!", "not valid base64"),
        (base64.b64encode(b"hello").decode(), "not a PEM key"),
        (
            base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").decode(),
            "not a usable private key",
        ),
    ],
)
def test_malformed_key_is_a_clear_error(value: str, fragment: str) -> None:
    with pytest.raises(SigningKeyError, match="RAG_PRIVATE_KEY") as raised:
        Signer.from_env_value(value)
    assert fragment in str(raised.value)


def test_rsa_key_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SigningKeyError, match="EC P-256"):
        Signer.from_env_value(_env_value(key))


def test_key_on_another_curve_is_refused() -> None:
    with pytest.raises(SigningKeyError, match="P-256"):
        Signer.from_env_value(_env_value(ec.generate_private_key(ec.SECP384R1())))


def test_canonical_payload_is_compact_json() -> None:
    assert json.loads(canonical_payload("a", "b", "c", 9))["timestamp"] == 9
