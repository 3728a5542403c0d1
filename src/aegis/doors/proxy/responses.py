"""What the proxy answers itself: refusals at the door and decisions that stop a call.

Two JSON bodies, one per kind of "no" (DESIGN.md §3, docs/errors.md):

* a refusal before any call existed (bad framing, no identity, an unusable
  target, an upstream that cannot be reached) is a ``RequestError``::

      {"error": {"type": "RequestError", "code": "request.malformed", "reason": "..."}}

* a decision that does not permit the call is the pipeline's ``PolicyViolation``
  (``Decision.error_body``), with the status and headers of
  :mod:`aegis.pipeline.wire` -- 403, 429 + Retry-After, 428 + x-aegis-approval-id --
  except that an identity refusal is 407, the status a proxy uses to ask for
  credentials (RFC 9110 §15.5.8).
"""

from __future__ import annotations

import json
from http import HTTPStatus

from aegis.core.decision import Decision
from aegis.errors import ErrorCode
from aegis.pipeline.wire import decision_headers, error_json, http_status

STATUS_PROXY_AUTH = 407

_IDENTITY_CODES = frozenset(
    {ErrorCode.IDENTITY_MISSING, ErrorCode.IDENTITY_INVALID, ErrorCode.IDENTITY_MISMATCH}
)


class RequestRefusedError(Exception):
    """A request refused at the door, before (or instead of) a decision.

    ``close`` says whether the connection must end after the answer: always for
    framing errors (the next request's first byte is unknowable, RFC 9112 §9.3),
    and whenever request bytes are left unread.
    """

    def __init__(self, status: int, code: ErrorCode, reason: str, *, close: bool = False) -> None:
        super().__init__(f"{status} {code}: {reason}")
        self.status = status
        self.code = code
        self.reason = reason
        self.close = close


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def render(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    *,
    close: bool = False,
    reason: str | None = None,
) -> bytes:
    """A complete HTTP/1.1 response with Content-Length framing."""
    lines = [f"HTTP/1.1 {status} {reason or reason_phrase(status)}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"content-length: {len(body)}")
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def challenge(realm: str, *, bearer: bool) -> list[tuple[str, str]]:
    """``Proxy-Authenticate`` challenges (RFC 9110 §11.7.1; Basic: RFC 7617 §2.1)."""
    out = [("proxy-authenticate", f'Basic realm="{realm}", charset="UTF-8"')]
    if bearer:
        out.append(("proxy-authenticate", f'Bearer realm="{realm}"'))
    return out


def request_error_body(code: ErrorCode, reason: str) -> bytes:
    body = {"error": {"type": "RequestError", "code": str(code), "reason": reason}}
    return json.dumps(body, separators=(",", ":")).encode()


def refusal_response(
    refusal: RequestRefusedError, *, realm: str, bearer: bool, close: bool | None = None
) -> bytes:
    headers = [("content-type", "application/json"), ("x-aegis-code", str(refusal.code))]
    if refusal.status == STATUS_PROXY_AUTH:
        headers.extend(challenge(realm, bearer=bearer))
    return render(
        refusal.status,
        headers,
        request_error_body(refusal.code, refusal.reason),
        close=refusal.close if close is None else close,
    )


def decision_status(decision: Decision) -> int:
    if decision.code in _IDENTITY_CODES:
        return STATUS_PROXY_AUTH
    return http_status(decision)


def decision_response(decision: Decision, *, realm: str, bearer: bool, close: bool) -> bytes:
    """The answer to a call the decision does not let through; nothing went upstream."""
    status = decision_status(decision)
    headers = [("content-type", "application/json"), *decision_headers(decision)]
    if status == STATUS_PROXY_AUTH:
        headers.extend(challenge(realm, bearer=bearer))
    return render(status, headers, error_json(decision), close=close)
