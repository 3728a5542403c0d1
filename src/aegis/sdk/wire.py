"""The decision API's JSON, both ways, without I/O.

Requests: a call goes out as :meth:`ToolCall.to_dict`, after the same
:func:`~aegis.core.call.parse_call` the server runs -- so a malformed call is
refused before it is sent, with the error the server would give, and the
in-process engine and the HTTP client refuse the same calls.

Responses: ``Decision.to_dict()`` is read back into a :class:`Decision`, nested
values included. The reader is strict about what it needs to act on (an outcome
it does not know, a sanitize without its sanitized params) -- such an answer is
unreadable, which is "could not decide", never "allow" -- and lenient about keys
it does not know, so a newer server can add fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aegis.core.call import ToolCall, parse_call
from aegis.core.decision import (
    ApprovalRequirement,
    Decision,
    Outcome,
    Redaction,
    ShadowResult,
)
from aegis.errors import CallError, ErrorCode
from aegis.sdk.errors import AegisRequestError, InvalidCall, ProtocolError, error_code

CallLike = ToolCall | Mapping[str, Any]
"""What ``decide`` accepts: a ToolCall, or its JSON form (validated by parse_call)."""


def validate_call(call: CallLike, path: str = "") -> ToolCall:
    """The call as the server will see it, or :class:`InvalidCall`.

    A ToolCall built directly skips ``parse_call``; it goes through it here, so
    non-JSON params, NaN, oversize strings or bad identifiers are refused the
    same way in every mode.
    """
    data = call.to_dict() if isinstance(call, ToolCall) else call
    try:
        return parse_call(data)
    except CallError as exc:
        where = f"{path}.{exc.path}" if path and exc.path else (path or exc.path)
        raise InvalidCall(exc.code, exc.message, where) from None


def decision_from_dict(data: object) -> Decision:
    """Read ``Decision.to_dict()`` JSON back into a Decision, or raise ProtocolError."""
    d = _object(data, "decision")
    outcome = _outcome(d.get("outcome"), "outcome")
    sanitized = d.get("sanitized_params")
    if sanitized is not None and not isinstance(sanitized, dict):
        raise ProtocolError("decision.sanitized_params must be an object or null")
    if outcome is Outcome.SANITIZE and sanitized is None:
        # The obligation cannot be applied without the rewritten params.
        raise ProtocolError("a sanitize decision came without sanitized_params")
    return Decision(
        outcome=outcome,
        reason=_str(d.get("reason", ""), "reason"),
        code=error_code(_str(d.get("code", ""), "code"), _fallback_code(outcome)),
        rule_ids=_str_tuple(d.get("rule_ids", []), "rule_ids"),
        policy_version=_str(d.get("policy_version", ""), "policy_version"),
        bundle_hash=_str(d.get("bundle_hash", ""), "bundle_hash"),
        decision_id=_str(d.get("decision_id"), "decision_id"),
        redactions=tuple(_redaction(r, i) for i, r in enumerate(_list(d.get("redactions", [])))),
        sanitized_params=sanitized,  # json.loads made it: plain JSON data already
        approval=_approval(d.get("approval")),
        retry_after=_number_or_none(d.get("retry_after"), "retry_after"),
        shadow=_shadow(d.get("shadow")),
        approval_id=_str_or_none(d.get("approval_id"), "approval_id"),
    )


def decisions_from_batch(data: object, expected: int) -> list[Decision]:
    """Read a batch answer, in call order::

        {"results": [{"index": 0, "decision": {...}}, {"index": 1, "error": {...}}, ...]}

    An item refused as malformed raises :class:`InvalidCall` naming it
    (``calls[1].params``); the client validates calls before sending, so that
    means the service is stricter than this SDK.
    """
    body = _object(data, "batch answer")
    items = body.get("results")
    if not isinstance(items, list):
        raise ProtocolError("a batch answer must hold a 'results' list")
    if len(items) != expected:
        raise ProtocolError(f"a batch of {expected} calls got {len(items)} results")
    out: list[Decision] = []
    for index, raw in enumerate(items):
        item = _object(raw, f"results[{index}]")
        if item.get("index", index) != index:
            raise ProtocolError(f"results[{index}] answers call {item.get('index')!r}")
        if "decision" in item:
            out.append(decision_from_dict(item["decision"]))
        elif isinstance(item.get("error"), Mapping):
            raise request_error(item, 400, prefix=f"calls[{index}]")
        else:
            raise ProtocolError(f"results[{index}] has neither a decision nor an error")
    return out


def request_error(body: object, status: int, *, prefix: str = "") -> AegisRequestError:
    """The exception for a refused request: ``{"error": {"code", "message", "path"}}``;
    a ``call.*`` code gives :class:`InvalidCall`."""
    err = body.get("error") if isinstance(body, Mapping) else None
    err = err if isinstance(err, Mapping) else {}
    raw_code = err.get("code")
    message = err.get("message")
    path = err.get("path")
    code = error_code(raw_code if isinstance(raw_code, str) else "", _status_code(status))
    text = message if isinstance(message, str) and message else f"HTTP {status}"
    where = path if isinstance(path, str) else ""
    if prefix:
        where = f"{prefix}.{where}" if where else prefix
    if str(code).startswith("call."):
        return InvalidCall(code, text, where, status=status)
    return AegisRequestError(code, text, status=status, path=where)


_STATUS_CODES = {
    401: ErrorCode.IDENTITY_MISSING,
    403: ErrorCode.IDENTITY_INVALID,
    404: ErrorCode.REQUEST_NOT_FOUND,
    405: ErrorCode.REQUEST_METHOD_NOT_ALLOWED,
    413: ErrorCode.REQUEST_TOO_LARGE,
    415: ErrorCode.REQUEST_UNSUPPORTED_MEDIA_TYPE,
}


def _status_code(status: int) -> ErrorCode:
    return _STATUS_CODES.get(status, ErrorCode.REQUEST_MALFORMED)


def _fallback_code(outcome: Outcome) -> ErrorCode:
    return {
        Outcome.ALLOW: ErrorCode.DECISION_ALLOWED,
        Outcome.SANITIZE: ErrorCode.DECISION_SANITIZED,
        Outcome.APPROVAL_NEEDED: ErrorCode.DECISION_APPROVAL_REQUIRED,
        Outcome.DENY: ErrorCode.DECISION_DENIED_BY_RULE,
    }[outcome]


# -- field readers ------------------------------------------------------------------


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


def _outcome(value: object, what: str) -> Outcome:
    if not isinstance(value, str):
        raise ProtocolError(f"decision.{what} must be a string")
    try:
        return Outcome(value)
    except ValueError:
        raise ProtocolError(f"decision.{what} {value!r} is not an outcome") from None


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"decision.{what} must be a string")
    return value


def _str_or_none(value: object, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise ProtocolError("decision.redactions must be a list")
    return value


def _str_tuple(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"decision.{what} must be a list of strings")
    return tuple(value)


def _number_or_none(value: object, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"decision.{what} must be a finite number or null")
    return float(value)


def _redaction(value: object, index: int) -> Redaction:
    r = _object(value, f"decision.redactions[{index}]")
    return Redaction(
        path=_str(r.get("path"), f"redactions[{index}].path"),
        detector=_str(r.get("detector"), f"redactions[{index}].detector"),
    )


def _approval(value: object) -> ApprovalRequirement | None:
    if value is None:
        return None
    a = _object(value, "decision.approval")
    ttl = a.get("ttl_seconds")
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise ProtocolError("decision.approval.ttl_seconds must be an integer")
    return ApprovalRequirement(
        group=_str(a.get("group"), "approval.group"),
        channel=_str_or_none(a.get("channel"), "approval.channel"),
        ttl_seconds=ttl,
        rule_id=_str(a.get("rule_id", ""), "approval.rule_id"),
    )


def _shadow(value: object) -> ShadowResult | None:
    if value is None:
        return None
    s = _object(value, "decision.shadow")
    return ShadowResult(
        outcome=_outcome(s.get("outcome"), "shadow.outcome"),
        rule_ids=_str_tuple(s.get("rule_ids", []), "shadow.rule_ids"),
        reason=_str(s.get("reason", ""), "shadow.reason"),
        policy_version=_str_or_none(s.get("policy_version"), "shadow.policy_version"),
        bundle_hash=_str_or_none(s.get("bundle_hash"), "shadow.bundle_hash"),
    )
