"""Strict JWS Compact Serialization verification (RFC 7515), below the JWT layer.

``verify_jws(compact, key, algorithms) -> payload bytes`` is what the token
verifier builds on, and what the Wycheproof / RFC 7520 corpus tests exercise
directly. The header policy is ours and deliberately narrower than RFC 7515;
the signature primitives and key handling are joserfc's.

What is refused, before any signature check:

* anything that is not exactly ``header.payload.signature`` in the base64url
  alphabet without padding (RFC 7515 §2, §7.1; RFC 4648 §5). The JSON
  serialization (RFC 7515 §7.2) is refused: one serialization, one parser.
* base64url with non-zero trailing bits (a second spelling of the same bytes,
  Wycheproof "ModifiedUnusedBits"): decoding must be canonical.
* a header that is not a JSON object, or has duplicate member names
  (RFC 7515 §5.2 step 4 allows "reject"; we do).
* an ``alg`` outside the caller's allowlist; ``none`` is never accepted, whatever
  the allowlist says (RFC 8725 §3.1, §3.2).
* ``jwk``, ``jku``, ``x5u``, ``x5c``, ``x5t``, ``x5t#S256``: the verifier's keys
  come from configuration only, never from the token (RFC 8725 §3.10 warns
  against following ``jku``/``x5u``; an embedded ``jwk`` lets the attacker pick
  the key). Refusing is stricter than ignoring and says so in the error.
* ``crit``: RFC 7515 §4.1.11 requires refusing a token whose ``crit`` lists an
  extension we do not understand; we understand none.

Then the key is checked against the algorithm (type, curve, ``alg``, ``use``,
``key_ops``; RFC 7517 §4.2–4.4, RFC 8725 §3.1 "use each key with one algorithm"),
and the signature verified.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry
from joserfc.util import urlsafe_b64decode

from aegis.identity.token_errors import TokenError, TokenErrorReason

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "MAX_TOKEN_LENGTH",
    "REFUSED_HEADERS",
    "SUPPORTED_ALGORITHMS",
    "CompactJWS",
    "check_header",
    "parse_compact",
    "verify_jws",
    "verify_signature",
]

#: Refused before parsing: our own tokens are well under 1 KiB (a deep delegation
#: chain with many scopes stays under 4 KiB); 8 KiB is the common header budget.
MAX_TOKEN_LENGTH = 8 * 1024

#: Signature algorithms with a public verification key (RFC 7518 §3.3–3.5, RFC 8037 §3.1).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
#: What ``verify_jws`` can be asked for. HMAC (RFC 7518 §3.2) is here so that the
#: corpus tests exercise our parser on the HS256 vectors too; the token verifier
#: refuses HS* at construction (a shared secret at a gateway lets anyone who can
#: verify mint, and is the classic alg-confusion target, RFC 8725 §2.1).
SUPPORTED_ALGORITHMS = ASYMMETRIC_ALGORITHMS | frozenset({"HS256", "HS384", "HS512"})

#: Header parameters that carry or locate a key (RFC 7515 §4.1.2–4.1.8).
REFUSED_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"})

_B64URL_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """A parsed, not yet verified, compact JWS."""

    header: dict[str, Any]
    payload: bytes
    signing_input: bytes  # ASCII(BASE64URL(header) || '.' || BASE64URL(payload)), RFC 7515 §5.1
    signature: bytes


def _malformed(message: str) -> TokenError:
    return TokenError.invalid(TokenErrorReason.MALFORMED, message)


def _decode_segment(segment: bytes, name: str) -> bytes:
    if not _B64URL_ALPHABET.issuperset(segment):
        raise _malformed(f"the {name} is not base64url without padding (RFC 7515 §2)")
    try:
        # joserfc's decoder also refuses non-canonical trailing bits.
        return urlsafe_b64decode(segment)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise _malformed(f"the {name} is not canonical base64url") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate member {name!r}")
        result[name] = value
    return result


def parse_compact(compact: object, *, max_length: int = MAX_TOKEN_LENGTH) -> CompactJWS:
    """Split and decode a JWS Compact Serialization (RFC 7515 §7.1), nothing more."""
    if not isinstance(compact, str):
        raise _malformed("a token must be a string")
    if len(compact) > max_length:
        raise TokenError.invalid(
            TokenErrorReason.TOO_LARGE, f"the token is longer than {max_length} characters"
        )
    if not compact.isascii():
        raise _malformed("a compact JWS is ASCII only")
    raw = compact.encode("ascii")
    if raw.lstrip().startswith(b"{"):
        raise _malformed("only the compact serialization is accepted, not JSON (RFC 7515 §7.2)")
    parts = raw.split(b".")
    if len(parts) != 3:
        raise _malformed(f"a compact JWS has 3 parts, this has {len(parts)}")
    header_b64, payload_b64, signature_b64 = parts
    if not header_b64:
        raise _malformed("the header is empty")
    if not signature_b64:
        raise _malformed("the signature is empty (unsecured JWS are refused)")
    header_bytes = _decode_segment(header_b64, "header")
    payload = _decode_segment(payload_b64, "payload")
    signature = _decode_segment(signature_b64, "signature")
    try:
        header = json.loads(header_bytes.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _malformed("the header is not valid UTF-8 JSON (RFC 7515 §5.2)") from exc
    if not isinstance(header, dict):
        raise _malformed("the header is not a JSON object")
    return CompactJWS(
        header=header,
        payload=payload,
        signing_input=header_b64 + b"." + payload_b64,
        signature=signature,
    )


def check_header(header: dict[str, Any], algorithms: Collection[str]) -> str:
    """Apply the header policy (module docstring); return the ``alg``."""
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _malformed("the header has no string 'alg' (RFC 7515 §4.1.1)")
    # Exact, case-sensitive match (RFC 7515 §4.1.1): "None", "NONE", "nOnE" are
    # simply not in any allowlist; "none" is refused even if listed.
    if alg == "none" or alg not in algorithms or alg not in SUPPORTED_ALGORITHMS:
        raise TokenError.invalid(TokenErrorReason.ALG_NOT_ALLOWED, f"algorithm {alg!r} not allowed")
    refused = REFUSED_HEADERS.intersection(header)
    if refused:
        names = ", ".join(sorted(refused))
        raise TokenError.invalid(
            TokenErrorReason.HEADER_REFUSED,
            f"header parameters that carry or locate keys are refused: {names} (RFC 8725 §3.10)",
        )
    if "crit" in header:
        raise TokenError.invalid(
            TokenErrorReason.CRIT_UNSUPPORTED,
            "'crit' lists extensions this verifier does not understand (RFC 7515 §4.1.11)",
        )
    return alg


def verify_signature(jws: CompactJWS, key: Key, alg: str) -> None:
    """Check that ``key`` may be used with ``alg``, then verify the signature."""
    model = JWSRegistry.algorithms.get(alg)
    if model is None or alg not in SUPPORTED_ALGORITHMS:
        raise TokenError.invalid(TokenErrorReason.ALG_NOT_ALLOWED, f"algorithm {alg!r} not allowed")
    try:
        # key type, curve, the key's own "alg" and "use" (RFC 7517 §4.2, §4.4).
        model.check_key(key)
    except JoseError as exc:
        raise TokenError.invalid(
            TokenErrorReason.KEY_MISMATCH, f"the key cannot be used with {alg}: {exc}"
        ) from exc
    try:
        # get_op_key("verify") inside checks "key_ops" (RFC 7517 §4.3).
        valid = model.verify(jws.signing_input, jws.signature, key)
    except JoseError as exc:
        raise TokenError.invalid(
            TokenErrorReason.KEY_MISMATCH, f"the key cannot verify {alg}: {exc}"
        ) from exc
    except (ValueError, TypeError, OverflowError) as exc:
        raise TokenError.invalid(
            TokenErrorReason.BAD_SIGNATURE, "signature does not verify"
        ) from exc
    if not valid:
        raise TokenError.invalid(TokenErrorReason.BAD_SIGNATURE, "signature does not verify")


def verify_jws(compact: object, key: Key, algorithms: Collection[str]) -> bytes:
    """Verify a compact JWS with one key; return the payload bytes.

    Raises ``TokenError`` (code ``identity.invalid``) for every refusal and
    ``ValueError`` if ``algorithms`` asks for something unsupported or ``none``.
    """
    unknown = set(algorithms) - SUPPORTED_ALGORITHMS
    if unknown:
        raise ValueError(f"unsupported algorithms: {sorted(unknown)}")
    jws = parse_compact(compact)
    alg = check_header(jws.header, algorithms)
    verify_signature(jws, key, alg)
    return jws.payload
