"""OPA-format bundle signatures: ``.signatures.json`` holding one JWS over the file hashes.

The format is OPA's (https://www.openpolicyagent.org/docs/management-bundles#signing)::

    {"signatures": ["<JWS compact serialisation>"]}

with the JWS payload::

    {"files": [{"name": ".manifest", "hash": "<hex>", "algorithm": "SHA-256"}, ...],
     "keyid": "<kid>", "scope": "<scope>"}

Every file of the bundle except ``.signatures.json`` is listed. Structured files
(names ending ``.json`` and ``.manifest``) are hashed over their canonical JSON
(RFC 8785), so a re-serialisation of the same value verifies; everything else
is hashed over its raw bytes. Keys are Ed25519 (``EdDSA``) or P-256 (``ES256``),
named by their RFC 7638 thumbprint; all JOSE work is joserfc's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import rfc8785
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey

from aegis.bundles.archive import read_archive, write_archive
from aegis.bundles.errors import BundleError, BundleErrorCode
from aegis.errors import ErrorCode
from aegis.identity.keys import SigningAlg, SigningKey

SIGNATURES_FILE: Final = ".signatures.json"
MANIFEST_FILE: Final = ".manifest"
_HASHES: Final[dict[str, Callable[[bytes], Any]]] = {
    "SHA-256": hashlib.sha256,
    "SHA-384": hashlib.sha384,
    "SHA-512": hashlib.sha512,
}
_MAX_JWS: Final = 1 << 20

__all__ = [
    "MANIFEST_FILE",
    "SIGNATURES_FILE",
    "PublicKey",
    "SignatureInfo",
    "file_hash",
    "keyring",
    "sign_bundle",
    "sign_files",
    "verify_files",
]


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verification key: its kid (RFC 7638 thumbprint), algorithm and JWK."""

    kid: str
    alg: SigningAlg
    key: OKPKey | ECKey = field(repr=False)

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        """An Ed25519 or P-256 public key (SubjectPublicKeyInfo PEM); ValueError otherwise."""
        native = load_pem_public_key(data)
        alg: SigningAlg
        key: OKPKey | ECKey
        if isinstance(native, ed25519.Ed25519PublicKey):
            alg, key = "EdDSA", OKPKey.import_key(native)
        elif isinstance(native, ec.EllipticCurvePublicKey) and isinstance(
            native.curve, ec.SECP256R1
        ):
            alg, key = "ES256", ECKey.import_key(native)
        else:
            raise ValueError("only Ed25519 and P-256 public keys can verify bundles")
        return cls(kid=key.thumbprint(), alg=alg, key=key)

    @classmethod
    def of(cls, signing: SigningKey) -> PublicKey:
        """The public half of a signing key."""
        jwk = signing.public_jwk()
        key: OKPKey | ECKey = (
            OKPKey.import_key(jwk) if signing.alg == "EdDSA" else ECKey.import_key(jwk)
        )
        return cls(kid=signing.kid, alg=signing.alg, key=key)

    def to_pem(self) -> bytes:
        return self.key.as_pem(private=False)


def keyring(keys: Iterable[PublicKey]) -> dict[str, PublicKey]:
    return {key.kid: key for key in keys}


@dataclass(frozen=True, slots=True)
class SignatureInfo:
    """What a verified signature said."""

    kid: str
    alg: str
    scope: str | None
    files: tuple[str, ...]


def file_hash(name: str, content: bytes, algorithm: str = "SHA-256") -> str:
    """OPA's file hash: canonical JSON for structured files, raw bytes otherwise."""
    hasher = _HASHES.get(algorithm)
    if hasher is None:
        raise BundleError(
            BundleErrorCode.BAD_SIGNATURE, f"unsupported hash algorithm {algorithm!r} for {name!r}"
        )
    if name.endswith((".json", MANIFEST_FILE)):
        try:
            content = rfc8785.dumps(json.loads(content.decode("utf-8")))
        except (ValueError, rfc8785.CanonicalizationError, RecursionError) as exc:
            raise BundleError(
                BundleErrorCode.FILE_MISMATCH, f"{name!r} is not valid JSON: {exc}"
            ) from None
    return str(hasher(content).hexdigest())


def sign_files(files: Mapping[str, bytes], key: SigningKey, *, scope: str | None = None) -> bytes:
    """The ``.signatures.json`` content for ``files`` (any existing signature is ignored)."""
    listed = [
        {"name": name, "hash": file_hash(name, files[name]), "algorithm": "SHA-256"}
        for name in sorted(files)
        if name != SIGNATURES_FILE
    ]
    claims: dict[str, Any] = {"files": listed, "keyid": key.kid}
    if scope is not None:
        claims["scope"] = scope
    token = jws.serialize_compact(
        {"alg": key.alg, "kid": key.kid}, rfc8785.dumps(claims), key.key, algorithms=[key.alg]
    )
    return json.dumps({"signatures": [token]}, indent=2).encode() + b"\n"


def _fail(code: ErrorCode, message: str) -> BundleError:
    return BundleError(code, message)


def _token(signatures: bytes) -> str:
    bad = BundleErrorCode.BAD_SIGNATURE
    if len(signatures) > _MAX_JWS:
        raise _fail(bad, f"{SIGNATURES_FILE} is larger than {_MAX_JWS} bytes")
    try:
        doc = json.loads(signatures.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _fail(bad, f"{SIGNATURES_FILE} is not valid JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"signatures"}:
        raise _fail(bad, f'{SIGNATURES_FILE} must be an object with only "signatures"')
    sigs = doc["signatures"]
    if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], str):
        raise _fail(bad, f'{SIGNATURES_FILE}: "signatures" must hold exactly one JWS')
    return sigs[0]


def verify_files(
    files: Mapping[str, bytes], keys: Mapping[str, PublicKey], *, scope: str | None = None
) -> SignatureInfo:
    """Check ``files`` against their ``.signatures.json``; raise BundleError on any doubt."""
    signatures = files.get(SIGNATURES_FILE)
    if signatures is None:
        raise _fail(BundleErrorCode.UNSIGNED, f"bundle is not signed (no {SIGNATURES_FILE})")
    token = _token(signatures)
    bad = BundleErrorCode.BAD_SIGNATURE
    try:
        unverified = jws.extract_compact(token.encode("ascii"))
        header = unverified.headers()
    except (JoseError, ValueError, UnicodeError):
        raise _fail(bad, "signature is not a well-formed JWS") from None
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise _fail(bad, 'signature header has no "kid"')
    key = keys.get(kid)
    if key is None:
        raise _fail(BundleErrorCode.UNKNOWN_KEY, f"bundle is signed by unknown key {kid!r}")
    if header.get("alg") != key.alg:
        raise _fail(bad, f"signature algorithm {header.get('alg')!r} does not match key {kid!r}")
    try:
        verified = jws.deserialize_compact(token, key.key, algorithms=[key.alg])
    except (JoseError, ValueError):
        raise _fail(bad, f"signature does not verify with key {kid!r}") from None
    try:
        claims = json.loads(verified.payload.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _fail(bad, "signature payload is not JSON") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("files"), list):
        raise _fail(bad, 'signature payload has no "files" list')
    if "keyid" in claims and claims["keyid"] != kid:
        raise _fail(bad, 'signature "keyid" claim does not match the header "kid"')
    signed_scope = claims.get("scope")
    if signed_scope is not None and not isinstance(signed_scope, str):
        raise _fail(bad, 'signature "scope" is not a string')
    if scope is not None and signed_scope != scope:
        raise _fail(
            BundleErrorCode.WRONG_SCOPE,
            f"bundle is signed for scope {signed_scope!r}, expected {scope!r}",
        )
    listed: dict[str, tuple[str, str]] = {}
    for entry in claims["files"]:
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("name", "hash")
        ):
            raise _fail(bad, "signature payload has a malformed file entry")
        algorithm = entry.get("algorithm", "SHA-256")
        if not isinstance(algorithm, str) or entry["name"] in listed:
            raise _fail(bad, f"signature payload entry {entry['name']!r} is malformed")
        listed[entry["name"]] = (entry["hash"], algorithm)
    for name, (digest, algorithm) in sorted(listed.items()):
        content = files.get(name)
        if content is None:
            raise _fail(BundleErrorCode.MISSING_FILE, f"signed file {name!r} is not in the bundle")
        if file_hash(name, content, algorithm) != digest.lower():
            raise _fail(BundleErrorCode.FILE_MISMATCH, f"{name!r} does not match its signed hash")
    for name in sorted(files):
        if name != SIGNATURES_FILE and name not in listed:
            raise _fail(BundleErrorCode.EXTRA_FILE, f"{name!r} is in the bundle but not signed")
    return SignatureInfo(kid=kid, alg=key.alg, scope=signed_scope, files=tuple(sorted(listed)))


def sign_bundle(bundle: bytes, key: SigningKey, *, scope: str | None = None) -> bytes:
    """Add (or replace) a bundle archive's ``.signatures.json``; the archive is validated first."""
    files = read_archive(bundle)
    files.pop(SIGNATURES_FILE, None)
    files[SIGNATURES_FILE] = sign_files(files, key, scope=scope)
    return write_archive(files)
