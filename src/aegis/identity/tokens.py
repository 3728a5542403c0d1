"""Agent tokens: the claims they carry, and minting them (RFC 7519, RFC 8693).

A token is a compact JWS (RFC 7515) whose payload is a JWT claims set
(RFC 7519 §4)::

    header   {"alg": "EdDSA", "kid": "<RFC 7638 thumbprint>", "typ": "JWT"}
    payload  {"iss": ..., "aud": ..., "sub": "<agent_id>", "tenant": "...",
              "scope": "read:crm write:tickets",          # RFC 8693 §4.2, space-separated
              "sid": "<session id>",                      # optional
              "jti": "<unique id>", "iat": 1700000000, "nbf": 1700000000, "exp": 1700000300,
              "act": {"sub": "<parent>", "act": {"sub": "<grandparent>"}}}   # optional

Delegation chain. ``sub`` is always the agent that holds the token. ``act``
uses RFC 8693 §4.1's nested shape to record who delegated to it, nearest
first: the outermost ``act.sub`` is the parent (``parent_agent_id``), its
``act.sub`` the grandparent, and so on up to the root agent. (RFC 8693 reads
``act`` as "the current actor on behalf of ``sub``"; we keep ``sub`` as the
acting agent so policies and the kill switch key on one field, and use the
nesting only as the chain of delegators. ``AgentClaims.parent_chain`` gives it
root → parent.) Delegation only narrows: a child's scopes are a subset of its
parent's, its ``exp`` never later than the parent's, same tenant, same session.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from joserfc.jws import JWSRegistry
from joserfc.util import json_b64encode, urlsafe_b64encode

from aegis.errors import ErrorCode
from aegis.identity.keys import Clock, SigningKeys, utc_now
from aegis.identity.token_errors import TokenError, TokenErrorReason

__all__ = [
    "DEFAULT_LIFETIME",
    "DEFAULT_MAX_DEPTH",
    "MAX_LIFETIME",
    "AgentClaims",
    "MaySpawn",
    "TokenMinter",
    "require_agent",
    "require_tenant",
]

DEFAULT_LIFETIME = timedelta(minutes=5)
#: "Short-lived": a token that outlives an hour is a credential, not a session.
MAX_LIFETIME = timedelta(hours=1)
DEFAULT_MAX_DEPTH = 5

#: RFC 6749 §3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ), no space, quote or backslash.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

#: ``may_spawn(tenant, parent_agent_id, child_agent_id)``: the registry's answer.
MaySpawn = Callable[[str, str, str], bool]


def _claims_error(message: str) -> TokenError:
    return TokenError.invalid(TokenErrorReason.INVALID_CLAIMS, message)


def _nonempty_str(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise _claims_error(f"claim {name!r} must be a non-empty string")
    return value


def _numeric_date(payload: Mapping[str, Any], name: str) -> int:
    """RFC 7519 §2 NumericDate. Fractions are truncated; bools and non-finite refused."""
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _claims_error(f"claim {name!r} must be a NumericDate")
    if isinstance(value, float) and not (-(2**53) < value < 2**53):
        raise _claims_error(f"claim {name!r} is out of range")
    return int(value)


def _parse_scopes(value: object) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise _claims_error("claim 'scope' must be a space-separated string (RFC 8693 §4.2)")
    scopes = tuple(value.split(" ")) if value else ()
    if not all(_SCOPE_TOKEN.fullmatch(s) for s in scopes):
        raise _claims_error("claim 'scope' holds an invalid scope token (RFC 6749 §3.3)")
    return scopes


def _parse_act(value: object, max_depth: int) -> tuple[str, ...]:
    """Nested ``act`` (nearest first) → chain root → parent."""
    nearest_first: list[str] = []
    node = value
    while node is not None:
        if not isinstance(node, dict):
            raise _claims_error("claim 'act' must be an object (RFC 8693 §4.1)")
        if len(nearest_first) >= max_depth:
            raise _claims_error(f"delegation chain deeper than {max_depth}")
        sub = node.get("sub")
        if not isinstance(sub, str) or not sub:
            raise _claims_error("every 'act' needs a non-empty 'sub'")
        nearest_first.append(sub)
        node = node.get("act")
    return tuple(reversed(nearest_first))


def _act_claim(parent_chain: tuple[str, ...]) -> dict[str, Any] | None:
    act: dict[str, Any] | None = None
    for agent in parent_chain:  # root first, so the root ends up innermost
        act = {"sub": agent} if act is None else {"sub": agent, "act": act}
    return act


@dataclass(frozen=True, slots=True)
class AgentClaims:
    """The verified claims of an agent token. Times are NumericDate (UTC seconds)."""

    iss: str
    aud: tuple[str, ...]
    sub: str  # the agent_id
    tenant: str
    scopes: tuple[str, ...]
    jti: str
    iat: int
    nbf: int
    exp: int
    sid: str | None = None
    #: Delegators, root first, parent last; empty for a root agent.
    parent_chain: tuple[str, ...] = ()

    @property
    def agent_id(self) -> str:
        return self.sub

    @property
    def parent_agent_id(self) -> str | None:
        return self.parent_chain[-1] if self.parent_chain else None

    @property
    def depth(self) -> int:
        return len(self.parent_chain)

    @property
    def act(self) -> dict[str, Any] | None:
        """The RFC 8693 §4.1 nested form: ``{"sub": parent, "act": {"sub": grandparent}}``."""
        return _act_claim(self.parent_chain)

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "iss": self.iss,
            "aud": self.aud[0] if len(self.aud) == 1 else list(self.aud),
            "sub": self.sub,
            "tenant": self.tenant,
            "scope": " ".join(self.scopes),
            "jti": self.jti,
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
        }
        if self.sid is not None:
            payload["sid"] = self.sid
        act = self.act
        if act is not None:
            payload["act"] = act
        return payload

    @classmethod
    def from_payload(
        cls, payload: Mapping[str, Any], *, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> AgentClaims:
        """Type-check a claims set. Values (issuer, audience, times) are the verifier's job."""
        aud = payload.get("aud")
        if isinstance(aud, str):
            audiences: tuple[str, ...] = (aud,)
        elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            audiences = tuple(aud)  # RFC 7519 §4.1.3: a string or an array of strings
        else:
            raise _claims_error("claim 'aud' must be a string or an array of strings")
        sid = payload.get("sid")
        if sid is not None and (not isinstance(sid, str) or not sid):
            raise _claims_error("claim 'sid' must be a non-empty string")
        return cls(
            iss=_nonempty_str(payload, "iss"),
            aud=audiences,
            sub=_nonempty_str(payload, "sub"),
            tenant=_nonempty_str(payload, "tenant"),
            scopes=_parse_scopes(payload.get("scope")),
            jti=_nonempty_str(payload, "jti"),
            iat=_numeric_date(payload, "iat"),
            nbf=_numeric_date(payload, "nbf"),
            exp=_numeric_date(payload, "exp"),
            sid=sid,
            parent_chain=_parse_act(payload.get("act"), max_depth),
        )


def require_tenant(claims: AgentClaims, tenant: str) -> None:
    """Refuse a valid token of another tenant (``identity.mismatch``)."""
    if claims.tenant != tenant:
        raise TokenError(
            ErrorCode.IDENTITY_MISMATCH,
            TokenErrorReason.WRONG_TENANT,
            "the token belongs to another tenant",
        )


def require_agent(claims: AgentClaims, agent_id: str) -> None:
    """Refuse a valid token of another agent (``identity.mismatch``)."""
    if claims.sub != agent_id:
        raise TokenError(
            ErrorCode.IDENTITY_MISMATCH,
            TokenErrorReason.WRONG_AGENT,
            "the token belongs to another agent",
        )


def _check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    result = tuple(dict.fromkeys(scopes))  # de-duplicated, order kept
    for scope in result:
        if not isinstance(scope, str) or not _SCOPE_TOKEN.fullmatch(scope):
            raise ValueError(f"invalid scope {scope!r} (RFC 6749 §3.3 scope-token)")
    return result


class TokenMinter:
    """Mints short-lived agent tokens with the keyring's active key."""

    def __init__(
        self,
        keys: SigningKeys,
        *,
        issuer: str,
        audience: str,
        lifetime: timedelta = DEFAULT_LIFETIME,
        clock: Clock = utc_now,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        if not timedelta(0) < lifetime <= MAX_LIFETIME:
            raise ValueError(f"lifetime must be positive and at most {MAX_LIFETIME}")
        if not issuer or not audience:
            raise ValueError("issuer and audience must be non-empty")
        if max_depth < 0:
            raise ValueError("max_depth must not be negative")
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._lifetime = int(lifetime.total_seconds())
        self._clock = clock
        self._max_depth = max_depth

    def _now(self) -> int:
        return int(self._clock().timestamp())

    def mint(
        self,
        agent_id: str,
        tenant: str,
        scopes: Iterable[str],
        session_id: str | None = None,
        parent_chain: Iterable[str] = (),
    ) -> tuple[str, AgentClaims]:
        """Mint a token; return it with the claims it carries."""
        now = self._now()
        return self._sign(
            agent_id=agent_id,
            tenant=tenant,
            scopes=_check_scopes(scopes),
            session_id=session_id,
            parent_chain=tuple(parent_chain),
            now=now,
            exp=now + self._lifetime,
        )

    def exchange(
        self,
        parent: AgentClaims,
        child_agent_id: str,
        scopes: Iterable[str],
        *,
        may_spawn: MaySpawn,
    ) -> tuple[str, AgentClaims]:
        """RFC 8693-style token exchange: the parent's verified claims → a child token.

        The child gets the parent's tenant and session, a chain one longer, only
        scopes the parent holds, and an ``exp`` no later than the parent's.
        """
        now = self._now()
        if parent.exp <= now:
            raise TokenError.invalid(TokenErrorReason.EXPIRED, "the parent token has expired")
        chain = (*parent.parent_chain, parent.sub)
        if len(chain) > self._max_depth:
            raise TokenError.invalid(
                TokenErrorReason.CHAIN_TOO_DEEP,
                f"delegation would be {len(chain)} deep; the limit is {self._max_depth}",
            )
        if child_agent_id in chain:
            raise TokenError.invalid(
                TokenErrorReason.SPAWN_REFUSED, "an agent cannot appear twice in its own chain"
            )
        requested = _check_scopes(scopes)
        held = set(parent.scopes)
        missing = [s for s in requested if s not in held]
        if missing:
            raise TokenError.invalid(
                TokenErrorReason.SCOPE_NOT_HELD,
                f"the parent does not hold {', '.join(missing)}; delegation only narrows",
            )
        if not may_spawn(parent.tenant, parent.sub, child_agent_id):
            raise TokenError.invalid(
                TokenErrorReason.SPAWN_REFUSED,
                f"agent {parent.sub!r} may not spawn {child_agent_id!r}",
            )
        exp = min(now + self._lifetime, parent.exp)
        return self._sign(
            agent_id=child_agent_id,
            tenant=parent.tenant,
            scopes=requested,
            session_id=parent.sid,
            parent_chain=chain,
            now=now,
            exp=exp,
        )

    def _sign(
        self,
        *,
        agent_id: str,
        tenant: str,
        scopes: tuple[str, ...],
        session_id: str | None,
        parent_chain: tuple[str, ...],
        now: int,
        exp: int,
    ) -> tuple[str, AgentClaims]:
        if not agent_id or not tenant:
            raise ValueError("agent_id and tenant must be non-empty")
        if any(not isinstance(a, str) or not a for a in parent_chain):
            raise ValueError("parent_chain holds an empty agent id")
        if len(parent_chain) > self._max_depth:
            raise ValueError(f"parent_chain is deeper than {self._max_depth}")
        claims = AgentClaims(
            iss=self._issuer,
            aud=(self._audience,),
            sub=agent_id,
            tenant=tenant,
            scopes=scopes,
            jti=secrets.token_urlsafe(16),  # 128 bits: unique without coordination
            iat=now,
            nbf=now,
            exp=exp,
            sid=session_id,
            parent_chain=parent_chain,
        )
        signer = self._keys.active
        header = {"alg": signer.alg, "kid": signer.kid, "typ": "JWT"}
        body = json.dumps(claims.to_payload(), separators=(",", ":"), ensure_ascii=False)
        signing_input = json_b64encode(header) + b"." + urlsafe_b64encode(body.encode("utf-8"))
        # The algorithm model directly: joserfc's registry warns on every EdDSA use
        # (RFC 9864 deprecates the polymorphic name), which is noise on a hot path.
        model = JWSRegistry.algorithms[signer.alg]
        signature = model.sign(signing_input, signer.key)
        token = (signing_input + b"." + urlsafe_b64encode(signature)).decode("ascii")
        return token, claims
