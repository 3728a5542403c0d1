"""Signed checkpoints: Ed25519 over RFC 8785 JSON, kid = RFC 7638 thumbprint."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from aegis.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    KeyUnavailableError,
    SigningKey,
    VerifyKey,
    keyring,
    sign_checkpoint,
    verify_checkpoint,
)
from aegis.errors import ErrorCode

ROOT = hashlib.sha256(b"root").digest()
TIME = "2025-01-02T03:04:05.000006Z"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def _cp(key: SigningKey, size: int = 10) -> Checkpoint:
    return sign_checkpoint(key, log_id="log-1", tree_size=size, root_hash=ROOT, time=TIME)


def test_sign_and_verify(key: SigningKey) -> None:
    cp = _cp(key)
    assert cp.kid == key.kid and cp.root_hash == ROOT.hex() and cp.tree_size == 10
    verify_checkpoint(cp, keyring(key.public))
    verify_checkpoint(cp.to_dict(), {key.kid: key.public})
    assert Checkpoint.from_dict(json.loads(json.dumps(cp.to_dict()))) == cp


def test_pem_round_trip_and_kid(key: SigningKey) -> None:
    again = SigningKey.from_pem(key.to_pem())
    assert again.kid == key.kid
    assert b"BEGIN PRIVATE KEY" in key.to_pem()  # PKCS#8
    public = VerifyKey.from_pem(key.public_pem())
    assert public.kid == key.kid
    raw = public.to_pem()
    x = serialization.load_pem_public_key(raw).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    jwk = (
        '{"crv":"Ed25519","kty":"OKP","x":"'
        + base64.urlsafe_b64encode(x).rstrip(b"=").decode()
        + '"}'
    )
    want = base64.urlsafe_b64encode(hashlib.sha256(jwk.encode()).digest()).rstrip(b"=").decode()
    assert key.kid == want and len(key.kid) == 43


def test_rfc8037_thumbprint_vector() -> None:
    # RFC 8037 Appendix A.3: the thumbprint of the A.2 public key.
    x = base64.urlsafe_b64decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public = VerifyKey(Ed25519PublicKey.from_public_bytes(x))
    assert public.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_wrong_key(key: SigningKey) -> None:
    other = SigningKey.generate()
    cp = _cp(key)
    with pytest.raises(CheckpointError, match="unknown key") as err:
        verify_checkpoint(cp, keyring(other.public))
    assert err.value.code is ErrorCode.AUDIT_BAD_CHECKPOINT
    # A key claiming the right kid but another key's bytes does not verify either.
    with pytest.raises(CheckpointError, match="bad signature"):
        verify_checkpoint(cp, {key.kid: other.public})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("log_id", "log-2"),
        ("tree_size", 11),
        ("root_hash", hashlib.sha256(b"other").hexdigest()),
        ("time", "2025-01-02T03:04:06Z"),
    ],
)
def test_tampered_field(key: SigningKey, name: str, value: object) -> None:
    cp = dataclasses.replace(_cp(key), **{name: value})
    with pytest.raises(CheckpointError, match="bad signature"):
        verify_checkpoint(cp, keyring(key.public))


def test_tampered_signature(key: SigningKey) -> None:
    cp = _cp(key)
    sig = bytearray(base64.urlsafe_b64decode(cp.signature + "=="))
    sig[5] ^= 1
    bad = base64.urlsafe_b64encode(bytes(sig)).rstrip(b"=").decode()
    for signature in (bad, "", "!!!", cp.signature + "A", cp.signature[:-4]):
        with pytest.raises(CheckpointError):
            verify_checkpoint(dataclasses.replace(cp, signature=signature), keyring(key.public))


@pytest.mark.parametrize(
    "change",
    [
        {"tree_size": -1},
        {"tree_size": True},
        {"tree_size": "10"},
        {"root_hash": "ABC"},
        {"root_hash": ROOT.hex().upper()},
        {"kid": 5},
        {"extra": 1},
    ],
)
def test_malformed(key: SigningKey, change: dict[str, object]) -> None:
    data = {**_cp(key).to_dict(), **change}
    with pytest.raises(CheckpointError):
        verify_checkpoint(data, keyring(key.public))


def test_missing_field(key: SigningKey) -> None:
    data = _cp(key).to_dict()
    del data["signature"]
    with pytest.raises(CheckpointError, match="missing signature"):
        Checkpoint.from_dict(data)


def test_key_loading_errors() -> None:
    ec = generate_private_key(SECP256R1())
    ec_pem = ec.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ec_pub = ec.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for loader, data in [
        (SigningKey.from_pem, b"garbage"),
        (SigningKey.from_pem, ec_pem),
        (VerifyKey.from_pem, b"garbage"),
        (VerifyKey.from_pem, ec_pub),
        (VerifyKey.from_pem, SigningKey.generate().to_pem()),
    ]:
        with pytest.raises(KeyUnavailableError) as err:
            loader(data)
        assert err.value.code is ErrorCode.AUDIT_KEY_UNAVAILABLE


def test_sign_rejects_bad_arguments(key: SigningKey) -> None:
    with pytest.raises(ValueError, match="32-byte"):
        sign_checkpoint(key, log_id="l", tree_size=1, root_hash=b"short", time=TIME)
