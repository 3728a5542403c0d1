"""Signing keys for agent tokens: a keyring that rotates, and the JWKS it publishes.

* Algorithms: EdDSA over Ed25519 (RFC 8037 §3.1) by default, ES256 (ECDSA P-256,
  RFC 7518 §3.4) for peers that cannot do EdDSA. Each key is bound to exactly one
  algorithm (RFC 8725 §3.1) and the binding is published as the JWK ``alg``.
* ``kid`` is the RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key:
  stable, derived, never chosen by anyone, and safe to log.
* Rotation with overlap: ``rotate()`` makes a new key the active signer; the
  previous ones keep verifying until ``overlap`` has passed, then retire and
  leave the JWKS. ``overlap`` must cover the token lifetime plus leeway, or a
  token minted just before a rotation dies early.
* ``jwks()`` is an RFC 7517 §5 JWK Set of public keys only (``kty``, curve
  members, ``kid``, ``alg``, ``use: "sig"``). ``VerificationKeys`` is the read
  side, built from such a set (a local keyring or a peer's published JWKS).

Persistence is PKCS#8 PEM per key (``SigningKey.to_pem`` / ``from_pem``); the
rotation schedule itself (which key retires when) is not persisted here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeyParameters, OKPKey

__all__ = [
    "DEFAULT_ALGORITHM",
    "SIGNING_ALGORITHMS",
    "Clock",
    "SigningAlg",
    "SigningKey",
    "SigningKeys",
    "VerificationKeys",
    "utc_now",
]

SigningAlg = Literal["EdDSA", "ES256"]
SIGNING_ALGORITHMS: tuple[SigningAlg, ...] = ("EdDSA", "ES256")
DEFAULT_ALGORITHM: SigningAlg = "EdDSA"

Clock = Callable[[], datetime]

#: JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def utc_now() -> datetime:
    return datetime.now(UTC)


def _bind(key: OKPKey | ECKey, alg: SigningAlg) -> OKPKey | ECKey:
    """Re-import ``key`` with kid (RFC 7638 thumbprint), alg and use set."""
    kid = key.thumbprint()  # of the public members only, RFC 7638 §3.2
    params: KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
    if isinstance(key, OKPKey):
        return OKPKey.import_key(key.as_dict(private=key.is_private), parameters=params)
    return ECKey.import_key(key.as_dict(private=key.is_private), parameters=params)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One private signing key, bound to one algorithm."""

    alg: SigningAlg
    key: OKPKey | ECKey = field(repr=False)

    @property
    def kid(self) -> str:
        return cast(str, self.key.kid)

    @classmethod
    def generate(cls, alg: SigningAlg = DEFAULT_ALGORITHM) -> SigningKey:
        if alg == "EdDSA":
            raw: OKPKey | ECKey = OKPKey.generate_key("Ed25519", private=True)
        elif alg == "ES256":
            raw = ECKey.generate_key("P-256", private=True)
        else:
            raise ValueError(f"unsupported signing algorithm {alg!r}: {SIGNING_ALGORITHMS}")
        return cls(alg=alg, key=_bind(raw, alg))

    @classmethod
    def from_pem(cls, data: bytes, password: bytes | None = None) -> SigningKey:
        """Load a PKCS#8 PEM private key; the algorithm follows from the key type."""
        native = load_pem_private_key(data, password=password)
        alg: SigningAlg
        raw: OKPKey | ECKey
        if isinstance(native, ed25519.Ed25519PrivateKey):
            alg, raw = "EdDSA", OKPKey.import_key(native)
        elif isinstance(native, ec.EllipticCurvePrivateKey) and isinstance(
            native.curve, ec.SECP256R1
        ):
            alg, raw = "ES256", ECKey.import_key(native)
        else:
            raise ValueError("only Ed25519 and P-256 private keys can sign agent tokens")
        return cls(alg=alg, key=_bind(raw, alg))

    def to_pem(self, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM of the private key (encrypted when a password is given)."""
        return self.key.as_pem(private=True, password=password.decode() if password else None)

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK (RFC 7517 §4) with kid, alg and use."""
        jwk = dict(self.key.as_dict(private=False))
        return {k: v for k, v in jwk.items() if k not in _PRIVATE_MEMBERS}


@dataclass(slots=True)
class _Entry:
    key: SigningKey
    retires_at: datetime | None  # None: the active key, or not yet rotated away


class SigningKeys:
    """A keyring: one active signing key, older keys verifying until they retire."""

    def __init__(
        self,
        active: SigningKey,
        *,
        overlap: timedelta = timedelta(minutes=15),
        clock: Clock = utc_now,
    ) -> None:
        if overlap < timedelta(0):
            raise ValueError("overlap must not be negative")
        self._overlap = overlap
        self._clock = clock
        self._entries: list[_Entry] = [_Entry(active, None)]

    @classmethod
    def generate(
        cls,
        alg: SigningAlg = DEFAULT_ALGORITHM,
        *,
        overlap: timedelta = timedelta(minutes=15),
        clock: Clock = utc_now,
    ) -> SigningKeys:
        return cls(SigningKey.generate(alg), overlap=overlap, clock=clock)

    @classmethod
    def from_pems(
        cls,
        pems: Iterable[bytes],
        *,
        password: bytes | None = None,
        overlap: timedelta = timedelta(minutes=15),
        clock: Clock = utc_now,
    ) -> SigningKeys:
        """The first PEM is the active key; the others verify for ``overlap`` from now."""
        keys = [SigningKey.from_pem(pem, password) for pem in pems]
        if not keys:
            raise ValueError("a keyring needs at least one key")
        ring = cls(keys[0], overlap=overlap, clock=clock)
        retires = clock() + overlap
        ring._entries.extend(_Entry(k, retires) for k in keys[1:])
        return ring

    @property
    def active(self) -> SigningKey:
        return self._entries[0].key

    def rotate(self, alg: SigningAlg | None = None) -> SigningKey:
        """Make a new key the active signer; the current ones retire after ``overlap``."""
        self._prune()
        new = SigningKey.generate(alg or self.active.alg)
        retires = self._clock() + self._overlap
        for entry in self._entries:
            if entry.retires_at is None:
                entry.retires_at = retires
        self._entries.insert(0, _Entry(new, None))
        return new

    def _prune(self) -> None:
        now = self._clock()
        self._entries = [e for e in self._entries if e.retires_at is None or e.retires_at > now]

    def verifying(self) -> tuple[SigningKey, ...]:
        """Keys still valid for verification now: the active one, then the overlapping."""
        self._prune()
        return tuple(e.key for e in self._entries)

    def jwks(self) -> dict[str, Any]:
        """The RFC 7517 §5 JWK Set of public keys to publish (active key first)."""
        return {"keys": [k.public_jwk() for k in self.verifying()]}

    def verification_keys(self) -> VerificationKeys:
        return VerificationKeys.from_jwks(self.jwks())


class VerificationKeys(Mapping[str, Key]):
    """Public keys by ``kid``, each bound to one algorithm. Immutable.

    Built from a JWK Set (RFC 7517 §5). Members with a ``kty`` we do not verify
    with are skipped (RFC 7517 §5: "SHOULD ignore"); everything else that is
    wrong (private members, a missing ``kid`` or ``alg``, ``use`` other than
    ``sig``, duplicate kids) raises ``ValueError``: a bad key set is a
    configuration error, not something to half-use.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Mapping[str, Key]) -> None:
        self._keys: dict[str, Key] = dict(keys)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> VerificationKeys:
        members = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(members, list):
            raise ValueError("a JWK Set is an object with a 'keys' array (RFC 7517 §5)")
        keys: dict[str, Key] = {}
        for index, jwk in enumerate(members):
            if not isinstance(jwk, dict):
                raise ValueError(f"keys[{index}] is not an object")
            kty, alg, kid = jwk.get("kty"), jwk.get("alg"), jwk.get("kid")
            if (kty, alg) not in (("OKP", "EdDSA"), ("EC", "ES256")):
                continue  # a key type or algorithm we never verify with
            if _PRIVATE_MEMBERS.intersection(jwk):
                raise ValueError(f"keys[{index}] holds private key material")
            if not isinstance(kid, str) or not kid:
                raise ValueError(f"keys[{index}] has no 'kid'")
            if kid in keys:
                raise ValueError(f"duplicate kid {kid!r}")
            if jwk.get("use", "sig") != "sig":
                raise ValueError(f"keys[{index}] is not a signature key")
            expected_crv = "Ed25519" if alg == "EdDSA" else "P-256"
            if jwk.get("crv") != expected_crv:
                raise ValueError(f"keys[{index}]: {alg} needs curve {expected_crv}")
            try:
                key: Key = (OKPKey if kty == "OKP" else ECKey).import_key(dict(jwk))
            except (JoseError, ValueError, TypeError) as exc:
                raise ValueError(f"keys[{index}] is not a valid {kty} key: {exc}") from exc
            keys[kid] = key
        return cls(keys)

    def __getitem__(self, kid: str) -> Key:
        return self._keys[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def alg_of(self, kid: str) -> str:
        return cast(str, self._keys[kid].alg)
