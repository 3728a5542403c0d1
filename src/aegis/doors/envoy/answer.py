"""A decision (or a refusal) as the HTTP answer every Envoy mode renders.

The status follows the shared mapping in :mod:`aegis.pipeline.wire` (allow and
sanitize 200, deny 403, limits 429 + Retry-After, approval_needed 428 +
x-aegis-approval-id); refusals before a call exists follow docs/errors.md
(identity.missing 401, malformed input 400, too large 413, wrong media type
415). Each mode then says it in its own wire format: a ``CheckResponse``, an
HTTP response to Envoy's ``http_service`` call, or ext_proc mutations and an
``ImmediateResponse``.

Sanitize is where the modes differ. ext_authz can add and remove headers but
cannot rewrite a body (``OkHttpResponse`` has no body field), so a sanitize
decision that changes the call is either refused (the default:
:attr:`AuthzSanitize.DENY_IF_REWRITE`, the secret never leaves) or let through
unchanged with ``x-aegis-sanitize: skipped`` (:attr:`AuthzSanitize.HEADERS_ONLY`,
for shadow roll-outs only). ext_proc rewrites: see :func:`plan_rewrite`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote, urlencode

from aegis.core.decision import Decision, Outcome, new_decision_id
from aegis.doors.envoy.mapping import BodyShape, MappedCall, MappingRefusal
from aegis.errors import ErrorCode
from aegis.pipeline.stages import PipelineResult
from aegis.pipeline.wire import decision_headers, error_json, http_status
from aegis.policy.compiled import CompiledPolicy

JSON_CONTENT_TYPE: Final = ("content-type", "application/json")
SANITIZE_HEADER: Final = "x-aegis-sanitize"
#: docs/errors.md: the HTTP status for each refusal code that is not a plain 400.
_REFUSAL_STATUS: Final = {
    ErrorCode.IDENTITY_MISSING: 401,
    ErrorCode.REQUEST_TOO_LARGE: 413,
    ErrorCode.CALL_TOO_LARGE: 413,
    ErrorCode.REQUEST_UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.REQUEST_NOT_FOUND: 404,
}


class AuthzSanitize(StrEnum):
    """What ext_authz answers for a sanitize decision that must change the request."""

    DENY_IF_REWRITE = "deny_if_rewrite"
    HEADERS_ONLY = "headers_only"


@dataclass(frozen=True, slots=True)
class Rewrite:
    """How ext_proc must change the request for a sanitize decision."""

    body: bytes | None = None  # the new body, or None to keep it
    target: str | None = None  # the new :path (path and query), or None to keep it


@dataclass(frozen=True, slots=True)
class Answer:
    """The door-neutral answer: 200 lets the request through (maybe rewritten)."""

    status: int
    headers: tuple[tuple[str, str], ...]  # upstream headers on 200, client headers otherwise
    body: bytes
    code: ErrorCode
    reason: str
    decision_id: str
    rewrite: Rewrite | None = None

    @property
    def permits(self) -> bool:
        return self.status == 200


def refusal_status(code: ErrorCode) -> int:
    return _REFUSAL_STATUS.get(code, 400)


def answer_refusal(refusal: MappingRefusal, policy: CompiledPolicy, now: datetime) -> Answer:
    """A request refused before any call existed, in the same error body as a deny."""
    decision = Decision(
        outcome=Outcome.DENY,
        reason=refusal.reason,
        code=refusal.code,
        rule_ids=(),
        policy_version=policy.version,
        bundle_hash=policy.bundle_hash,
        decision_id=new_decision_id(now),
    )
    status = refusal_status(refusal.code)
    headers = [JSON_CONTENT_TYPE, *_safe(decision_headers(decision))]
    if status == 401:
        # RFC 9110 §11.6.1: a 401 names the scheme to use (RFC 6750 §3).
        headers.append(("www-authenticate", 'Bearer realm="aegis"'))
    return Answer(
        status=status,
        headers=tuple(headers),
        body=error_json(decision),
        code=refusal.code,
        reason=refusal.reason,
        decision_id=decision.decision_id,
    )


def answer_decision(
    result: PipelineResult,
    mapped: MappedCall,
    *,
    can_rewrite: bool,
    authz_sanitize: AuthzSanitize = AuthzSanitize.DENY_IF_REWRITE,
) -> Answer:
    """The answer for a decided call. ``can_rewrite`` is True for ext_proc only."""
    decision = result.decision
    headers = _safe(decision_headers(decision))
    if not decision.permits:
        return _denied(decision, http_status(decision), headers)
    if decision.outcome is not Outcome.SANITIZE:
        return Answer(200, headers, b"", decision.code, decision.reason, decision.decision_id)
    plan = plan_rewrite(mapped, decision)
    if plan is None:  # sanitize found nothing to redact: the request goes as it is
        return Answer(200, headers, b"", decision.code, decision.reason, decision.decision_id)
    if isinstance(plan, str):
        return _denied(decision._replace(reason=f"{decision.reason}; {plan}"), 403, headers)
    if can_rewrite:
        return Answer(200, headers, b"", decision.code, decision.reason, decision.decision_id, plan)
    if authz_sanitize is AuthzSanitize.HEADERS_ONLY:
        headers = (*headers, (SANITIZE_HEADER, "skipped"))
        return Answer(200, headers, b"", decision.code, decision.reason, decision.decision_id)
    why = "ext_authz cannot rewrite the request, so a call that needs redaction is refused"
    return _denied(decision._replace(reason=f"{decision.reason}; {why}"), 403, headers)


def _denied(decision: Decision, status: int, headers: tuple[tuple[str, str], ...]) -> Answer:
    return Answer(
        status=status,
        headers=(JSON_CONTENT_TYPE, *headers),
        body=error_json(decision),
        code=decision.code,
        reason=decision.reason,
        decision_id=decision.decision_id,
    )


_MISSING: Final = object()


def plan_rewrite(mapped: MappedCall, decision: Decision) -> Rewrite | str | None:
    """What a sanitize decision changes in the request: None when nothing, a
    :class:`Rewrite`, or the reason it cannot be written back (the door refuses).

    Only members that changed are written: a body member means a new JSON body
    (members in their original order, other sources left out); a query parameter
    means a new query string on the same raw path. A redaction inside a path
    variable cannot be written back without changing which resource is called.
    """
    sanitized = decision.sanitized_params
    if sanitized is None:
        return None
    original = mapped.call.params
    changed = {
        key
        for key in {*sanitized, *original}
        if sanitized.get(key, _MISSING) != original.get(key, _MISSING)
    }
    if not changed:
        return None
    if changed & mapped.path_keys:
        return "a redaction falls in a path variable, which cannot be rewritten"
    if changed - {*mapped.body_keys, *mapped.query_keys}:
        return "the sanitized call has parameters the request does not carry"
    body = target = None
    if changed & set(mapped.body_keys):
        if mapped.body_shape is BodyShape.OBJECT:
            new: Any = {k: sanitized[k] for k in mapped.body_keys if k in sanitized}
        else:
            new = sanitized.get("body")
        body = json.dumps(new, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    if changed & set(mapped.query_keys):
        pairs: list[tuple[str, str]] = []
        for key in mapped.query_keys:
            value = sanitized.get(key)
            for item in value if isinstance(value, list) else [value]:
                pairs.append((key, item if isinstance(item, str) else json.dumps(item)))
        target = f"{mapped.raw_path}?{urlencode(pairs, quote_via=quote)}"
    return Rewrite(body, target)


def _safe(headers: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Header values from policy data (a version string) cannot split a header."""
    return tuple(
        (name, value if value.isascii() and value.isprintable() else _printable(value))
        for name, value in headers
    )


def _printable(value: str) -> str:
    return "".join(ch for ch in value if ch.isascii() and ch.isprintable())
