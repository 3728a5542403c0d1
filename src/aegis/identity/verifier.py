"""Verifying agent tokens: strict JOSE checks once, then a cache until expiry.

``TokenVerifier.verify(token) -> AgentClaims`` or ``TokenError``. Order of checks
(each failure has its own ``reason``, docs/identity.md "Tokens"):

1. absent → ``identity.missing``; over 8 KiB → ``too_large`` (before parsing).
2. cache hit (these exact bytes verified before) → only ``exp`` is re-checked.
3. strict compact JWS parse and header policy (``token_jws``): alg allowlist
   (EdDSA, ES256; never ``none`` or HS*), ``kid`` present and ours, no
   key-carrying headers, no ``crit``, ``typ`` absent or ``JWT``/``at+jwt``
   (RFC 8725 §3.11), no ``cty`` (nested JWTs are not accepted, RFC 7519 §5.2).
4. the key for ``kid`` must be bound to the header's ``alg`` (RFC 8725 §3.1);
   then the signature.
5. claims (RFC 7519 §4.1, §7.2): types, ``iss`` exact, our audience in ``aud``,
   ``exp``/``nbf``/``iat`` against the clock with a bounded leeway.

Revocation and suspension are not checked here; the pipeline asks the kill
switch on every call with the claims this returns (``jti``, ``sid``, ``sub``,
``parent_chain``, ``tenant``), whether or not the token came from the cache.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aegis.errors import ErrorCode
from aegis.identity.keys import SIGNING_ALGORITHMS, Clock, VerificationKeys, utc_now
from aegis.identity.token_cache import CacheStats, VerifiedCache
from aegis.identity.token_errors import TokenError, TokenErrorReason
from aegis.identity.token_jws import (
    MAX_TOKEN_LENGTH,
    check_header,
    parse_compact,
    verify_signature,
)
from aegis.identity.tokens import DEFAULT_MAX_DEPTH, AgentClaims

__all__ = ["MAX_LEEWAY", "TokenVerifier", "VerifierStats"]

#: Clock skew we tolerate at most: beyond two minutes "expired" stops meaning much.
MAX_LEEWAY = timedelta(seconds=120)
#: ``typ`` values accepted (compared case-insensitively, RFC 7515 §4.1.9).
_ACCEPTED_TYP = frozenset({"jwt", "at+jwt"})


@dataclass(slots=True)
class VerifierStats:
    """Counters: how often the expensive path ran. ``cache`` has hits/misses/evictions."""

    signature_checks: int = 0
    cache: CacheStats | None = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 §6)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            # RFC 7519 §4: a claims set with duplicate names MUST be rejected or
            # parsed last-wins; two parsers disagreeing is how confusion starts.
            raise ValueError(f"duplicate claim {name!r}")
        result[name] = value
    return result


class TokenVerifier:
    """Verifies agent tokens against a set of public keys. Thread-safe."""

    def __init__(
        self,
        keys: VerificationKeys,
        *,
        issuer: str,
        audience: str,
        algorithms: Collection[str] = ("EdDSA", "ES256"),
        leeway: timedelta = timedelta(seconds=30),
        clock: Clock = utc_now,
        cache_size: int = 100_000,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_length: int = MAX_TOKEN_LENGTH,
        max_lifetime: timedelta = timedelta(hours=24),
    ) -> None:
        algs = frozenset(algorithms)
        if not algs or not algs <= set(SIGNING_ALGORITHMS):
            # Never `none`, never HS*: only the asymmetric algorithms our keys use.
            raise ValueError(f"algorithms must be a non-empty subset of {SIGNING_ALGORITHMS}")
        if not timedelta(0) <= leeway <= MAX_LEEWAY:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY}")
        if not issuer or not audience:
            raise ValueError("issuer and audience must be non-empty")
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._algorithms = algs
        self._leeway = leeway.total_seconds()
        self._clock = clock
        self._max_depth = max_depth
        self._max_length = max_length
        self._max_lifetime = max_lifetime.total_seconds()
        self._cache: VerifiedCache[AgentClaims] = VerifiedCache(cache_size)
        self.stats = VerifierStats(cache=self._cache.stats)

    def update_keys(self, keys: VerificationKeys) -> None:
        """Swap the key set (rotation, a refreshed JWKS). Forgets cached tokens,
        so a token signed by a key that just left the set is refused at once."""
        self._keys = keys
        self._cache.clear()

    def verify(self, token: str | None) -> AgentClaims:
        if token is None or token == "":
            raise TokenError(ErrorCode.IDENTITY_MISSING, TokenErrorReason.MISSING, "no token")
        now = self._clock().timestamp()
        if isinstance(token, str):
            cached = self._cache.get(token, now)
            if cached is not None:
                return cached[0]
        claims = self._verify_uncached(token, now)
        self._cache.put(token, claims, claims.exp + self._leeway)
        return claims

    def _verify_uncached(self, token: object, now: float) -> AgentClaims:
        jws = parse_compact(token, max_length=self._max_length)
        alg = check_header(jws.header, self._algorithms)
        header = jws.header
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP):
            raise TokenError.invalid(
                TokenErrorReason.HEADER_REFUSED, "'typ' must be JWT or at+jwt (RFC 8725 §3.11)"
            )
        if "cty" in header:
            raise TokenError.invalid(
                TokenErrorReason.HEADER_REFUSED, "nested JWTs ('cty') are not accepted"
            )
        kid = header.get("kid")
        # The kid is only ever a dictionary key here: never a path, query or URL
        # (RFC 8725 §3.10), and it is not echoed back (it is attacker-chosen).
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError.invalid(TokenErrorReason.UNKNOWN_KID, "'kid' names no key we hold")
        self.stats.signature_checks += 1
        verify_signature(jws, key, alg)
        try:
            payload = json.loads(
                jws.payload.decode("utf-8"),
                object_pairs_hook=_no_duplicates,
                parse_constant=_reject_constant,
            )
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise TokenError.invalid(
                TokenErrorReason.MALFORMED, "the payload is not a UTF-8 JSON object"
            ) from exc
        if not isinstance(payload, dict):
            raise TokenError.invalid(TokenErrorReason.MALFORMED, "the payload is not a JSON object")
        claims = AgentClaims.from_payload(payload, max_depth=self._max_depth)
        self._check_values(claims, now)
        return claims

    def _check_values(self, claims: AgentClaims, now: float) -> None:
        if claims.iss != self._issuer:
            raise TokenError.invalid(TokenErrorReason.WRONG_ISSUER, "issuer is not trusted")
        if self._audience not in claims.aud:
            # RFC 7519 §4.1.3: reject if we are not among the audiences.
            raise TokenError.invalid(
                TokenErrorReason.WRONG_AUDIENCE, "token is for another audience"
            )
        leeway = self._leeway
        if now >= claims.exp + leeway:  # RFC 7519 §4.1.4: on or after exp → reject
            raise TokenError.invalid(TokenErrorReason.EXPIRED, "token has expired")
        if now + leeway < claims.nbf:  # RFC 7519 §4.1.5
            raise TokenError.invalid(TokenErrorReason.NOT_YET_VALID, "token is not valid yet")
        if now + leeway < claims.iat:  # issued in the future: a clock or a forgery
            raise TokenError.invalid(
                TokenErrorReason.NOT_YET_VALID, "token was issued in the future"
            )
        if claims.exp <= claims.nbf:
            raise TokenError.invalid(TokenErrorReason.INVALID_CLAIMS, "'exp' is not after 'nbf'")
        if claims.exp - claims.iat > self._max_lifetime:
            # Agent tokens are short-lived by design: a signed token that claims to
            # live for years is a minting bug or a stolen key, never accepted.
            raise TokenError.invalid(
                TokenErrorReason.INVALID_CLAIMS, "token lifetime exceeds the allowed maximum"
            )
        hops = (*claims.parent_chain, claims.sub)
        if len(set(hops)) != len(hops):
            # A delegation chain that names an agent twice is a loop (RFC 8693 act
            # claims nest; nothing legitimate repeats an actor).
            raise TokenError.invalid(
                TokenErrorReason.INVALID_CLAIMS, "delegation chain names an agent twice"
            )
