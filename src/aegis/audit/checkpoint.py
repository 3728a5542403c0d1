"""Signed checkpoints: an Ed25519 signature over the Merkle root of the log.

A checkpoint says "the first ``tree_size`` records of log ``log_id`` have the
RFC 6962 Merkle root ``root_hash``" (see :mod:`aegis.audit.merkle`). The
signature is Ed25519 (RFC 8032) over the RFC 8785 canonical JSON of every
other field, ``kid`` included, so a signature cannot be moved to another key,
size, root, time or log. ``kid`` is the RFC 7638 JWK thumbprint of the public
key, so a verifier picks the key by id and key rotation needs no coordination.

All cryptography is the ``cryptography`` package's; nothing is hand-rolled.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from aegis.audit.record import canonical
from aegis.errors import AegisError, ErrorCode

_HEX64 = re.compile(r"[0-9a-f]{64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class CheckpointError(AegisError):
    """A checkpoint is malformed, signed by an unknown key, or its signature is bad."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.AUDIT_BAD_CHECKPOINT, message)


class KeyUnavailableError(AegisError):
    """A signing or verification key could not be loaded."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.AUDIT_KEY_UNAVAILABLE, message)


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict inverse of :func:`b64url`; ValueError on anything else."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc
    if b64url(raw) != text:  # non-canonical trailing bits
        raise ValueError("not canonical base64url")
    return raw


def _thumbprint(public: Ed25519PublicKey) -> str:
    """RFC 7638 §3: SHA-256 over the required OKP members (RFC 8037 §2), sorted."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}
    return b64url(hashlib.sha256(canonical(jwk)).digest())


class VerifyKey:
    """An Ed25519 public key and its ``kid``."""

    __slots__ = ("_key", "kid")

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self.kid = _thumbprint(key)

    @classmethod
    def from_pem(cls, data: bytes) -> VerifyKey:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise KeyUnavailableError(f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyUnavailableError(f"not an Ed25519 public key ({type(key).__name__})")
        return cls(key)

    def to_pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """An Ed25519 private key for signing checkpoints."""

    __slots__ = ("_key", "kid", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = VerifyKey(key.public_key())
        self.kid = self.public.kid

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyUnavailableError(f"not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyUnavailableError(f"not an Ed25519 private key ({type(key).__name__})")
        return cls(key)

    def to_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted: protect the file (the CLI writes it 0600)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        return self.public.to_pem()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement of the log's size and Merkle root."""

    log_id: str
    tree_size: int
    root_hash: str  # hex of the RFC 6962 root
    time: str  # RFC 3339
    kid: str
    signature: str  # base64url Ed25519 over signed_bytes()

    def signed_bytes(self) -> bytes:
        """What the signature covers: RFC 8785 JSON of every field but ``signature``."""
        return canonical(
            {
                "log_id": self.log_id,
                "tree_size": self.tree_size,
                "root_hash": self.root_hash,
                "time": self.time,
                "kid": self.kid,
            }
        )

    def root_bytes(self) -> bytes:
        return bytes.fromhex(self.root_hash)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        """Read a checkpoint (a store row, an export line); CheckpointError if malformed."""
        if not isinstance(data, Mapping):
            raise CheckpointError("a checkpoint must be a JSON object")
        fields = ("log_id", "tree_size", "root_hash", "time", "kid", "signature")
        missing = [f for f in fields if f not in data]
        if missing:
            raise CheckpointError(f"checkpoint is missing {', '.join(missing)}")
        extra = sorted(set(data) - set(fields))
        if extra:
            raise CheckpointError(f"checkpoint has unknown fields {', '.join(extra)}")
        size = data["tree_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise CheckpointError(f"tree_size must be a non-negative integer, got {size!r}")
        for name in ("log_id", "root_hash", "time", "kid", "signature"):
            if not isinstance(data[name], str):
                raise CheckpointError(f"checkpoint {name} must be a string")
        if not _HEX64.fullmatch(data["root_hash"]):
            raise CheckpointError("root_hash must be 64 lowercase hex digits")
        return cls(
            log_id=data["log_id"],
            tree_size=size,
            root_hash=data["root_hash"],
            time=data["time"],
            kid=data["kid"],
            signature=data["signature"],
        )


def sign_checkpoint(
    key: SigningKey, *, log_id: str, tree_size: int, root_hash: bytes, time: str
) -> Checkpoint:
    if tree_size < 0 or len(root_hash) != 32:
        raise ValueError("a checkpoint needs tree_size >= 0 and a 32-byte root")
    draft = Checkpoint(log_id, tree_size, root_hash.hex(), time, key.kid, "")
    return Checkpoint(
        log_id, tree_size, draft.root_hash, time, key.kid, b64url(key.sign(draft.signed_bytes()))
    )


def verify_checkpoint(cp: Checkpoint | Mapping[str, Any], keys: Mapping[str, VerifyKey]) -> None:
    """Raise :class:`CheckpointError` unless ``cp`` is well formed and signed by its ``kid``."""
    if not isinstance(cp, Checkpoint):
        cp = Checkpoint.from_dict(cp)
    else:
        Checkpoint.from_dict(cp.to_dict())  # same validation for constructed ones
    where = f"checkpoint at size {cp.tree_size}"
    key = keys.get(cp.kid)
    if key is None:
        raise CheckpointError(f"{where} is signed by unknown key {cp.kid}")
    try:
        signature = b64url_decode(cp.signature)
    except ValueError:
        raise CheckpointError(f"{where}: signature is not base64url") from None
    if len(signature) != 64 or not key.verify(signature, cp.signed_bytes()):
        raise CheckpointError(f"{where}: bad signature (key {cp.kid})")


def keyring(*keys: VerifyKey) -> dict[str, VerifyKey]:
    """``{kid: key}`` for :func:`verify_checkpoint`."""
    return {k.kid: k for k in keys}
