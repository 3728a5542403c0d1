"""Reading a JSON request body strictly: media type, UTF-8, RFC 8259 JSON.

Everything refused here is refused before a call exists (``request.*`` codes):

* a media type other than ``application/json`` (a ``charset`` other than
  UTF-8 included) or a Content-Encoding: 415 (RFC 9110 §15.5.16, §8.4);
* bytes that are not UTF-8 (RFC 8259 §8.1 requires it), JSON that does not
  parse, ``NaN``/``Infinity`` (not JSON, RFC 8259 §6), an object with a
  repeated name, and nesting deeper than the decoder's recursion limit: 400
  ``request.invalid_json``.

Repeated names are refused because RFC 8259 §4 leaves their meaning open: one
peer reads the first ``"tool"``, another the last, and a decision about one
call would be applied to another.
"""

from __future__ import annotations

import json
from typing import Any

from aegis.errors import ErrorCode
from aegis.http.types import HttpRequest

JSON_MEDIA_TYPE = "application/json"


class BodyError(Exception):
    """The request body cannot be read as JSON; carries the status and code to answer."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _RepeatedNameError(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _RepeatedNameError(f"repeated name {name[:64]!r} in an object")
            seen.add(name)
    return obj


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant)


def check_media_type(content_type: str | None, content_encoding: str | None) -> None:
    """Raise BodyError(415) unless the body is declared as identity-coded JSON."""
    if content_type == JSON_MEDIA_TYPE and content_encoding is None:
        return  # the usual spelling, without parsing it
    if content_type is None:
        raise BodyError(
            415, ErrorCode.REQUEST_UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"
        )
    media, _, params = content_type.partition(";")
    if media.strip(" \t").lower() != JSON_MEDIA_TYPE:
        raise BodyError(
            415, ErrorCode.REQUEST_UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"
        )
    if params:
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip(" \t").lower() == "charset" and value.strip(' \t"').lower() not in {
                "utf-8",
                "utf8",
            }:
                raise BodyError(
                    415, ErrorCode.REQUEST_UNSUPPORTED_MEDIA_TYPE, "JSON is read as UTF-8 only"
                )
    if content_encoding is not None and content_encoding.strip(" \t").lower() != "identity":
        # RFC 9110 §8.4.1: a coding the server does not apply -> 415.
        raise BodyError(
            415, ErrorCode.REQUEST_UNSUPPORTED_MEDIA_TYPE, "Content-Encoding is not supported"
        )


def parse_json(body: bytes) -> Any:
    """Decode ``body`` as strict UTF-8 JSON, or raise BodyError(400)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(
            400, ErrorCode.REQUEST_INVALID_JSON, f"body is not UTF-8 (byte {exc.start})"
        ) from None
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise BodyError(400, ErrorCode.REQUEST_INVALID_JSON, "JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise BodyError(
            400, ErrorCode.REQUEST_INVALID_JSON, f"invalid JSON: {exc.msg} at {exc.pos}"
        ) from None
    except ValueError as exc:  # repeated names, NaN/Infinity, integers past int_max_str_digits
        raise BodyError(400, ErrorCode.REQUEST_INVALID_JSON, f"invalid JSON: {exc}") from None


def read_json(request: HttpRequest) -> tuple[Any, str | None]:
    """The JSON body of ``request`` and its bearer token, or raise BodyError.

    One pass over the headers finds the three this door reads.
    """
    content_type = content_encoding = authorization = None
    for name, value in request.headers:
        if name == "content-type":
            if content_type is not None:
                # RFC 9110 §5.3: Content-Type is not a list; two are two answers.
                raise BodyError(400, ErrorCode.REQUEST_INVALID_HEADER, "repeated Content-Type")
            content_type = value
        elif name == "content-encoding":
            content_encoding = value
        elif name == "authorization" and authorization is None:
            authorization = value
    check_media_type(content_type, content_encoding)
    return parse_json(request.body), bearer_token(authorization)


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (RFC 6750 §2.1; the scheme is
    case-insensitive, RFC 9110 §11.1), else None: other schemes carry no credentials
    this door understands, and the identity stage decides what missing ones mean."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip(" \t").partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip(" \t")
    return token or None
