"""Verified agent identity's parts: keys, verifier, kill switch, the JWKS route."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from joserfc.jwk import ECKey, OKPKey

from aegis.http.types import Handler, HttpRequest, HttpResponse
from aegis.identity.keys import VerificationKeys
from aegis.identity.killswitch import KillSwitch, MemoryRevocationStore, RevocationStore
from aegis.identity.registry import AgentRegistry
from aegis.identity.stage import TokenIdentity
from aegis.identity.verifier import TokenVerifier
from aegis.server.errors import ConfigError
from aegis.settings import IdentitySettings

JWKS_PATH = "/.well-known/jwks.json"
GET_HEAD = frozenset({"GET", "HEAD"})


@dataclass(eq=False)
class IdentityBuild:
    stage: TokenIdentity
    kill_switch: KillSwitch | None
    #: The public keys tokens are verified with, served at JWKS_PATH.
    jwks: dict[str, Any]


def jwks_handler(jwks: dict[str, Any]) -> Handler:
    body = json.dumps(jwks, separators=(",", ":")).encode()
    response = HttpResponse(
        200, (("content-type", "application/jwk-set+json"), ("cache-control", "max-age=300")), body
    )

    async def handler(request: HttpRequest) -> HttpResponse:  # noqa: ARG001 - a Handler
        return response

    return handler


def _pem_jwk(path: Path) -> dict[str, Any]:
    """A public key PEM as a JWK bound to its algorithm (kid: RFC 7638 thumbprint)."""
    data = path.read_bytes()
    native = load_pem_public_key(data)
    key: OKPKey | ECKey
    if isinstance(native, ed25519.Ed25519PublicKey):
        key, alg = OKPKey.import_key(data), "EdDSA"
    elif isinstance(native, ec.EllipticCurvePublicKey) and isinstance(native.curve, ec.SECP256R1):
        key, alg = ECKey.import_key(data), "ES256"
    else:
        raise ConfigError(f"identity.public_key_paths: {path} is neither Ed25519 nor P-256")
    return {**key.as_dict(private=False), "kid": key.thumbprint(), "alg": alg, "use": "sig"}


def _load_jwks(cfg: IdentitySettings) -> dict[str, Any]:
    if cfg.jwks_path is not None:
        try:
            jwks = json.loads(cfg.jwks_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"identity.jwks_path: {cfg.jwks_path} is not JSON: {exc}") from None
        if not isinstance(jwks, dict):
            raise ConfigError(f"identity.jwks_path: {cfg.jwks_path} is not a JWK Set")
        return jwks
    return {"keys": [_pem_jwk(path) for path in cfg.public_key_paths]}


def build_identity(
    cfg: IdentitySettings, *, registry: AgentRegistry | None = None
) -> IdentityBuild | None:
    """The token identity stage for ``identity.mode: tokens`` (None when unverified).
    Key files are read here: a bad key set is ``config.invalid`` at start-up."""
    if cfg.mode != "tokens":
        return None
    if not cfg.issuer or not cfg.audience:  # the settings validate this already
        raise ConfigError("identity.mode tokens needs identity.issuer and identity.audience")
    jwks = _load_jwks(cfg)
    try:
        keys = VerificationKeys.from_jwks(jwks)
    except ValueError as exc:
        raise ConfigError(f"identity: {exc}") from None
    if not keys:
        raise ConfigError("identity: the key set holds no EdDSA or ES256 key")
    verifier = TokenVerifier(
        keys,
        issuer=cfg.issuer,
        audience=cfg.audience,
        leeway=timedelta(seconds=cfg.leeway_seconds),
    )
    store: RevocationStore
    if cfg.killswitch_redis_url:
        from aegis.identity.killswitch_redis import RedisRevocationStore  # noqa: PLC0415

        store = RedisRevocationStore(cfg.killswitch_redis_url, client_name="aegis-gateway")
    else:
        store = MemoryRevocationStore()
    kill_switch = KillSwitch(store, registry=registry)
    stage = TokenIdentity(
        verifier, kill_switch=kill_switch, require_chain_match=cfg.require_chain_match
    )
    return IdentityBuild(stage, kill_switch, jwks)
