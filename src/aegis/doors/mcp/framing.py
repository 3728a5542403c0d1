"""Reading one JSON-RPC message from one stdio line, without I/O.

The stdio transport frames messages as UTF-8 JSON, one per line, with no
embedded newlines (spec 2025-11-25, basic/transports "stdio"). A line the
proxy cannot accept is answered here, with the JSON-RPC 2.0 §5.1 error a
client can act on -- it is never passed to the server loop, so it can neither
crash it nor reach an upstream:

* not UTF-8, not JSON, NaN/Infinity, nesting deeper than :data:`MAX_DEPTH`,
  more than :data:`MAX_NODES` values, a lone surrogate: -32700 Parse error;
* a JSON array (batching was removed from MCP in 2025-06-18), a non-object,
  an object that is no JSON-RPC 2.0 message, or a request whose ``id`` is not
  a string or an integer (basic "Requests": the ID MUST NOT be null): -32600
  Invalid Request, with the request's id when it has a usable one;
* a line longer than the configured limit: -32600 (the stdio reader decides
  that before the line is read whole; see :func:`oversize_error`).

Blank lines are skipped. Everything else is a :class:`JSONRPCMessage`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

import mcp_types as types
from pydantic import ValidationError

#: Deepest nesting of a whole message (the tool arguments inside it are held to
#: aegis.core.call.MAX_PARAM_DEPTH later, by the call checks).
MAX_DEPTH: Final = 64
#: Most JSON values in one message.
MAX_NODES: Final = 200_000


@dataclass(frozen=True, slots=True)
class Refused:
    """A line the proxy answers itself with ``response`` (a JSON-RPC error)."""

    response: types.JSONRPCError


class _RejectedError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_response(code: int, message: str, request_id: types.RequestId | None = None) -> Refused:
    return Refused(
        types.JSONRPCError(
            jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message)
        )
    )


def oversize_error(limit: int) -> Refused:
    return error_response(
        types.INVALID_REQUEST, f"Invalid Request: message larger than {limit} bytes"
    )


def decode_line(line: bytes) -> types.JSONRPCMessage | Refused | None:
    """The message on ``line``, the refusal to answer it with, or None (blank)."""
    body = line.rstrip(b"\r\n")
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return error_response(types.PARSE_ERROR, f"Parse error: invalid UTF-8 at byte {exc.start}")
    try:
        data = json.loads(text, parse_constant=_no_constant)
        _check_shape(data)
    except _RejectedError as exc:
        return error_response(exc.code, exc.message)
    except RecursionError:
        return error_response(types.PARSE_ERROR, f"Parse error: nested deeper than {MAX_DEPTH}")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return error_response(types.PARSE_ERROR, f"Parse error: {str(exc)[:200]}")
    if isinstance(data, list):
        return error_response(
            types.INVALID_REQUEST, "Invalid Request: JSON-RPC batches are not supported"
        )
    if not isinstance(data, dict):
        return error_response(
            types.INVALID_REQUEST, "Invalid Request: a message must be a JSON object"
        )
    request_id = data.get("id")
    usable_id = request_id if _is_request_id(request_id) else None
    if "method" in data and "id" in data and usable_id is None:
        return error_response(
            types.INVALID_REQUEST, "Invalid Request: id must be a string or an integer"
        )
    try:
        return types.jsonrpc_message_adapter.validate_python(data, by_name=False)
    except ValidationError:
        return error_response(
            types.INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message", usable_id
        )


def encode(message: types.JSONRPCMessage) -> bytes:
    """One line of the wire: the message as compact JSON, then a newline."""
    return message.model_dump_json(by_alias=True, exclude_unset=True).encode("utf-8") + b"\n"


def _is_request_id(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def _no_constant(name: str) -> object:
    raise _RejectedError(types.PARSE_ERROR, f"Parse error: {name} is not JSON")


def _check_shape(data: object) -> None:
    """Depth, size and lone surrogates, iteratively (no recursion to exhaust)."""
    stack: list[tuple[object, int]] = [(data, 0)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise _RejectedError(types.PARSE_ERROR, f"Parse error: more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise _RejectedError(types.PARSE_ERROR, f"Parse error: nested deeper than {MAX_DEPTH}")
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    # JSON's \ud800 escapes decode to text no UTF-8 peer can carry.
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _RejectedError(
                types.PARSE_ERROR, "Parse error: lone surrogate in a string"
            ) from None


__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "Refused",
    "decode_line",
    "encode",
    "error_response",
    "oversize_error",
]
