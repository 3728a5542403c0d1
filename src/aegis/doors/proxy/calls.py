"""Requests as ToolCalls, and sanitized params back into a request.

The mapping (docs/doors/proxy.md has the table):

* absolute-form ``GET``/``HEAD`` without a body -> ``read_tool`` (``http.get``,
  kind read); any other method, or a GET that carries a body (it sends data
  out) -> ``write_tool`` (``http.request``, kind write);
* ``CONNECT`` -> ``connect_tool`` (``http.request``, kind write);
* ``destination`` is the URL :mod:`aegis.doors.proxy.target` rebuilt from the
  parsed host, so the policy decides on the host that is dialled;
* ``params`` for plain HTTP: ``method``, ``path``, ``query`` (without ``?``),
  ``headers`` (the end-to-end fields forwarded, one value per lower-case name,
  without Host, framing, Via and the private credential headers), and ``body``
  when it was inspected: the JSON value for a JSON media type, else the UTF-8
  text. For CONNECT: ``{"method": "CONNECT"}``.

Every call goes through :func:`aegis.core.call.parse_call`, the same validation
every door applies to untrusted input (depth, sizes, numbers, Unicode).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aegis.core.call import JsonValue, ToolCall, parse_call
from aegis.doors.proxy.config import ProxyConfig
from aegis.doors.proxy.headers import combine
from aegis.doors.proxy.identity import ProxyIdentity
from aegis.doors.proxy.parsing import RequestHead
from aegis.doors.proxy.responses import RequestRefusedError
from aegis.doors.proxy.target import Target
from aegis.errors import CallError, ErrorCode

#: RFC 3986 §3.3 pchar and §3.4 query characters, plus "%" so existing escapes stay.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
#: W3C Trace Context limits ToolCall enforces; longer values are not passed on.
_TRACEPARENT_MAX = 55
_TRACESTATE_MAX = 512


@dataclass(frozen=True, slots=True)
class InspectedBody:
    """A request body the policy sees: its decoded value, and whether it was JSON."""

    value: JsonValue
    is_json: bool


class UninspectableBodyError(Exception):
    """The body cannot be shown to the policy (content-coded, or not UTF-8)."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate names are the classic JSON parser differential (RFC 8259 §4:
    # "the behavior of software that receives such an object is unpredictable"):
    # Python keeps the last value, many servers the first. Refuse both readings.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN / Infinity (RFC 8259 §6)


def is_json_media_type(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip(" \t").lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def inspect_body(head: RequestHead, body: bytes) -> InspectedBody:
    """The body as the policy sees it.

    Raises RequestRefusedError (invalid JSON) or UninspectableBodyError.
    """
    encoding = head.get("content-encoding")
    if encoding is not None and encoding.strip(" \t").lower() != "identity":
        raise UninspectableBodyError(f"the body is content-coded ({encoding})")
    if is_json_media_type(head.get("content-type")):
        try:
            value = json.loads(
                body.decode("utf-8"),
                object_pairs_hook=_no_duplicate_keys,
                parse_constant=_no_constants,
            )
        except (ValueError, RecursionError) as exc:
            reason = f"the body is not valid JSON: {exc}"[:200]
            raise RequestRefusedError(400, ErrorCode.REQUEST_INVALID_JSON, reason) from None
        return InspectedBody(value, is_json=True)
    try:
        return InspectedBody(body.decode("utf-8"), is_json=False)
    except UnicodeDecodeError:
        raise UninspectableBodyError("the body is neither JSON nor UTF-8 text") from None


def policy_headers(forwarded: list[tuple[str, str]], config: ProxyConfig) -> dict[str, str]:
    return combine((n, v) for n, v in forwarded if n not in config.private_headers)


def _trace(headers: Mapping[str, str], data: dict[str, Any]) -> None:
    traceparent = headers.get("traceparent")
    if traceparent and len(traceparent) <= _TRACEPARENT_MAX:
        data["traceparent"] = traceparent
        tracestate = headers.get("tracestate")
        if tracestate and len(tracestate) <= _TRACESTATE_MAX:
            data["tracestate"] = tracestate


def _parse(data: dict[str, Any]) -> ToolCall:
    try:
        return parse_call(data)
    except CallError as exc:
        status = 413 if exc.code is ErrorCode.CALL_TOO_LARGE else 400
        raise RequestRefusedError(status, exc.code, exc.message) from None


def http_call(
    config: ProxyConfig,
    identity: ProxyIdentity,
    head: RequestHead,
    target: Target,
    *,
    forwarded: list[tuple[str, str]],
    body: InspectedBody | None,
    has_body: bool,
) -> ToolCall:
    """The ToolCall for an absolute-form request. ``forwarded`` are the end-to-end
    header fields the upstream will receive (before Host, Via and framing)."""
    read = head.method in config.read_methods and not has_body
    headers = policy_headers(forwarded, config)
    params: dict[str, Any] = {
        "method": head.method,
        "path": target.path,
        "query": target.query,
        "headers": headers,
    }
    if body is not None:
        params["body"] = body.value
    data: dict[str, Any] = {
        "tenant": identity.tenant,
        "agent_id": identity.agent_id,
        "tool": config.read_tool if read else config.write_tool,
        "kind": "read" if read else "write",
        "destination": target.destination,
        "params": params,
    }
    _trace(headers, data)
    return _parse(data)


def connect_call(
    config: ProxyConfig, identity: ProxyIdentity, head: RequestHead, target: Target
) -> ToolCall:
    data: dict[str, Any] = {
        "tenant": identity.tenant,
        "agent_id": identity.agent_id,
        "tool": config.connect_tool,
        "kind": "write",
        "destination": target.destination,
        "params": {"method": "CONNECT"},
    }
    _trace(combine(head.headers), data)
    return _parse(data)


@dataclass(frozen=True, slots=True)
class Rewrite:
    """How a sanitize decision changes the forwarded request (None: unchanged)."""

    origin_form: str | None = None
    headers: list[tuple[str, str]] | None = None
    body: bytes | None = None

    @property
    def changes_anything(self) -> bool:
        return self.origin_form is not None or self.headers is not None or self.body is not None


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _cannot(reason: str) -> RequestRefusedError:
    # A sanitize obligation the proxy cannot carry out is not an allow.
    return RequestRefusedError(403, ErrorCode.REQUEST_DESTINATION_REFUSED, reason)


def rewrite_for_sanitize(
    original: Mapping[str, Any],
    sanitized: Mapping[str, Any],
    forwarded: list[tuple[str, str]],
    config: ProxyConfig,
    body: InspectedBody | None,
) -> Rewrite:
    """Turn ``Decision.sanitized_params`` back into what is sent upstream.

    Only what the redactor changed is rewritten; the rest of the request goes
    out as received. Redaction markers in the path or query are percent-encoded
    (``[REDACTED:email]`` -> ``%5BREDACTED:email%5D``); a sanitized body is
    re-serialised (compact JSON, or the text) and re-framed by the caller.
    """
    if sanitized.get("method") != original.get("method"):
        raise _cannot("the policy's sanitize obligation rewrites the method")
    origin_form = None
    path, query = sanitized.get("path"), sanitized.get("query")
    if path != original.get("path") or query != original.get("query"):
        new_path = quote(_text(path), safe=_PATH_SAFE) or "/"
        if not new_path.startswith("/"):
            new_path = "/" + new_path
        new_query = quote(_text(query), safe=_QUERY_SAFE) if query else ""
        origin_form = f"{new_path}?{new_query}" if new_query else new_path
    headers = None
    new_headers = sanitized.get("headers")
    if new_headers != original.get("headers"):
        if not isinstance(new_headers, Mapping):
            raise _cannot("the policy's sanitize obligation replaced the headers")
        headers = []
        seen: set[str] = set()
        for name, value in forwarded:
            if name in config.private_headers:
                headers.append((name, value))
            elif name not in seen and name in new_headers:
                seen.add(name)
                text = _text(new_headers[name])
                if not any(ch in text for ch in "\r\n\0"):  # never split a field
                    headers.append((name, text))
    new_body = None
    if "body" in original and sanitized.get("body") != original["body"]:
        redacted = sanitized.get("body")
        if body is not None and body.is_json:
            new_body = json.dumps(
                redacted, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode("utf-8")
        else:
            new_body = _text(redacted).encode("utf-8")
    return Rewrite(origin_form, headers, new_body)
