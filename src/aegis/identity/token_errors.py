"""Why a token was refused: one error type, three stable codes, finer reasons.

``errors.py`` owns the stable codes (``identity.missing``, ``identity.invalid``,
``identity.mismatch``); a token refusal carries one of them plus a ``reason`` that
says which check failed. Reasons are part of the documented contract
(docs/identity.md, "Tokens") so that SIEM rules can match on them, but callers
that only care about allow/deny match on the code.
"""

from __future__ import annotations

from enum import StrEnum

from aegis.errors import AegisError, ErrorCode

__all__ = ["TokenError", "TokenErrorReason"]


class TokenErrorReason(StrEnum):
    """Which check refused the token. Never renamed once released."""

    MISSING = "missing"  # no token at all (code identity.missing)
    MALFORMED = "malformed"  # not a strict compact JWS / JWT, bad base64url, bad JSON
    TOO_LARGE = "too_large"  # over the size limit, refused before any parsing
    ALG_NOT_ALLOWED = "alg_not_allowed"  # `none`, HS*, or any alg outside the allowlist
    UNKNOWN_KID = "unknown_kid"  # no `kid`, or a `kid` we do not hold
    KEY_MISMATCH = "key_mismatch"  # the key for this kid is bound to another alg / use
    HEADER_REFUSED = "header_refused"  # `jwk`, `jku`, `x5u`, `x5c`, `x5t` … or a bad `typ`
    CRIT_UNSUPPORTED = "crit_unsupported"  # any `crit` (we understand no extension)
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"  # `nbf` (or `iat`) in the future beyond the leeway
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    INVALID_CLAIMS = "invalid_claims"  # a required claim missing or of the wrong type
    WRONG_TENANT = "wrong_tenant"  # valid token, another tenant (code identity.mismatch)
    WRONG_AGENT = "wrong_agent"  # valid token, another agent (code identity.mismatch)
    # -- delegation (token exchange, RFC 8693) --------------------------------------
    SCOPE_NOT_HELD = "scope_not_held"  # a child asked for a scope its parent lacks
    CHAIN_TOO_DEEP = "chain_too_deep"
    SPAWN_REFUSED = "spawn_refused"  # the registry says this parent may not spawn the child


class TokenError(AegisError):
    """A token was missing, invalid, or names someone else.

    ``code`` is one of ``IDENTITY_MISSING``, ``IDENTITY_INVALID`` or
    ``IDENTITY_MISMATCH``; ``reason`` says which check failed. The message never
    echoes the token itself (it is a bearer credential).
    """

    def __init__(self, code: ErrorCode, reason: TokenErrorReason, message: str) -> None:
        super().__init__(code, message)
        self.reason = reason

    @classmethod
    def invalid(cls, reason: TokenErrorReason, message: str) -> TokenError:
        return cls(ErrorCode.IDENTITY_INVALID, reason, message)

    def to_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "reason": str(self.reason), "message": self.message}
