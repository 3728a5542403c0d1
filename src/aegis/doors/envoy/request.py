"""An HTTP request as Envoy describes it, and the strict readers of its parts.

Each reader either returns a normalised value or raises :class:`RefusedError`
with a stable code; nothing here guesses. Where two parsers could read the same
bytes two ways (an encoded slash, a repeated header, a duplicate JSON member,
body and query both naming a parameter) the request is refused, because the
policy must judge exactly what the tool will act on.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

from aegis.errors import ErrorCode

#: Ports implied by a scheme (RFC 9110 §4.2).
DEFAULT_PORTS: Final = {"http": "80", "https": "443"}
#: Query fields accepted before the request is refused (urllib's max_num_fields).
MAX_QUERY_FIELDS: Final = 1000
# RFC 9110 §5.6.2 token characters: header names and methods.
TCHAR: Final = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
# RFC 3986 §2.3 unreserved characters: the only percent-escapes decoding never changes.
_UNRESERVED: Final = frozenset(string.ascii_letters + string.digits + "-._~")
# RFC 3986 §3.2.2 reg-name (lower-cased): unreserved / pct-encoded / sub-delims.
REG_NAME: Final = frozenset(string.ascii_lowercase + string.digits + "-._~%!$&'()*+,;=")
_IP_LITERAL: Final = frozenset("0123456789abcdef:.v%-_~")
_HEX: Final = frozenset("0123456789abcdef")
_NO_VALUES: Final[list[str]] = []


@dataclass(frozen=True, slots=True)
class EnvoyRequest:
    """One HTTP request as Envoy describes it, whichever API it came through.

    ``target`` is the request target as Envoy saw it: path and query, no decoding
    (``AttributeContext.HttpRequest.path``; ext_proc's ``:path``). ``headers`` have
    lower-case names, repeats kept, pseudo-headers removed. ``body`` is None when
    Envoy forwarded no body at all, which is not the same as an empty one.
    """

    method: str
    target: str
    authority: str
    scheme: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    body_truncated: bool = False
    source_address: str | None = None
    request_id: str | None = None
    _index: dict[str, list[str]] | None = field(default=None, init=False, repr=False, compare=False)

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, in order (do not modify the list)."""
        index = self._index
        if index is None:  # built once: the mapper asks about ten headers per request
            index = {}
            for key, value in self.headers:
                index.setdefault(key, []).append(value)
            object.__setattr__(self, "_index", index)
        return index.get(name, _NO_VALUES)


@dataclass(frozen=True, slots=True)
class MappingRefusal:
    """Why a request could not become a call: a stable ``request.*``, ``call.*`` or
    ``identity.*`` code. The door answers it with a 4xx; it is never allowed."""

    code: ErrorCode
    reason: str


class RefusedError(Exception):
    """Raised by the readers below; the mapper turns it into a MappingRefusal."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.refusal = MappingRefusal(code, reason)


def normalize_path(raw: str) -> str:
    """RFC 3986 normalisation of an origin-form path; refuses what reads two ways.

    Unreserved percent-escapes are decoded and the rest upper-cased (§6.2.2.1-2),
    dot segments removed (§5.2.4), repeated slashes merged. ``%2F``/``%5C`` and
    backslashes are refused: servers disagree on whether they split segments
    (Envoy's own CVE-2019-9901 was this), so ``/a%2F..%2Fb`` could mean two paths.
    """
    if not raw.startswith("/"):
        raise RefusedError(ErrorCode.REQUEST_MALFORMED, "the request path must start with '/'")
    if not raw.isascii() or not raw.isprintable() or " " in raw or "#" in raw:
        raise RefusedError(ErrorCode.REQUEST_MALFORMED, "the path has characters HTTP forbids")
    if "\\" in raw:
        raise RefusedError(ErrorCode.REQUEST_MALFORMED, "a backslash in the path is ambiguous")
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        pair = raw[i + 1 : i + 3]
        if len(pair) != 2 or not set(pair.lower()) <= _HEX:
            raise RefusedError(ErrorCode.REQUEST_MALFORMED, "a bad percent-escape in the path")
        byte = int(pair, 16)
        if chr(byte) in "/\\" or byte < 0x20 or byte == 0x7F:
            raise RefusedError(
                ErrorCode.REQUEST_MALFORMED, "encoded slashes or control bytes in the path"
            )
        out.append(chr(byte) if chr(byte) in _UNRESERVED else "%" + pair.upper())
        i += 3
    parts = "".join(out).split("/")
    segments: list[str] = []
    for segment in parts[1:]:
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in {".", ""}:
            segments.append(segment)
    trailing = bool(segments) and parts[-1] in {"", ".", ".."}
    return "/" + "/".join(segments) + ("/" if trailing else "")


def split_authority(authority: str) -> tuple[str, str]:
    """Host (lower-case, trailing dot dropped) and port (may be "") of a Host value."""
    text = authority.strip().lower()
    if not text:
        raise RefusedError(ErrorCode.REQUEST_MALFORMED, "the request has no host (:authority)")
    bad = RefusedError(ErrorCode.REQUEST_INVALID_HEADER, "the host is not a valid authority")
    if text.startswith("["):  # IP-literal, RFC 3986 §3.2.2
        end = text.find("]")
        if end < 0:
            raise bad
        host, rest = text[: end + 1], text[end + 1 :]
        if len(host) < 3 or not set(host[1:-1]) <= _IP_LITERAL:
            raise bad
        if rest and not rest.startswith(":"):
            raise bad
        port = rest[1:]
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
        host = host.rstrip(".")
        # '@' (userinfo), '/', '\', spaces: none belongs in Host (RFC 9110 §7.2).
        if not host or not set(host) <= REG_NAME:
            raise bad
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise RefusedError(ErrorCode.REQUEST_INVALID_HEADER, "the host's port is not valid")
    return host, port


def single_header(request: EnvoyRequest, name: str) -> str | None:
    """The one value of a header, stripped. A repeated one is refused: two parsers
    (ours, the tool's) could each take a different copy."""
    values = request.header_values(name)
    if not values:
        return None
    if len(values) > 1:
        raise RefusedError(ErrorCode.REQUEST_INVALID_HEADER, f"{name} appears more than once")
    value = values[0]
    if any(ch in value for ch in "\r\n\x00"):
        raise RefusedError(ErrorCode.REQUEST_INVALID_HEADER, f"{name} carries CR, LF or NUL")
    return value.strip(" \t")


def content_length(request: EnvoyRequest) -> int | None:
    values = request.header_values("content-length")
    if not values:
        return None
    if len(set(values)) > 1 or not (values[0].isascii() and values[0].isdigit()):
        # RFC 9112 §6.3: an invalid or conflicting length is a framing error.
        raise RefusedError(
            ErrorCode.REQUEST_AMBIGUOUS_LENGTH, "content-length is invalid or repeated"
        )
    return int(values[0])


def content_type(request: EnvoyRequest) -> tuple[str, str]:
    """(media type, charset), both lower-case; ("", "") when absent."""
    value = single_header(request, "content-type")
    if not value:
        return "", ""
    media, *params = value.split(";")
    charset = ""
    for param in params:
        key, _, val = param.strip().partition("=")
        if key.lower() == "charset":
            charset = val.strip().strip('"').lower()
    return media.strip().lower(), charset


def is_json_media_type(media_type: str) -> bool:
    """application/json, or any ``+json`` structured syntax suffix (RFC 6839 §3.1)."""
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def parse_query(query: str) -> dict[str, Any]:
    """application/x-www-form-urlencoded fields; a repeated name becomes a list."""
    try:
        pairs = parse_qsl(
            query,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise RefusedError(ErrorCode.REQUEST_MALFORMED, f"the query is malformed: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out


def parse_json_body(body: bytes) -> Any:
    """Strict JSON (RFC 8259): UTF-8 only, no duplicate names, no NaN or Infinity."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RefusedError(ErrorCode.REQUEST_INVALID_JSON, "the body is not valid UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RefusedError:
        raise
    except RecursionError:
        raise RefusedError(ErrorCode.REQUEST_INVALID_JSON, "the JSON nests too deeply") from None
    except ValueError as exc:  # JSONDecodeError; int() past sys.int_info's digit limit
        raise RefusedError(ErrorCode.REQUEST_INVALID_JSON, f"the body is not JSON: {exc}") from None


def _no_duplicates(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        # RFC 8259 §4: names SHOULD be unique, and parsers disagree on which copy
        # wins -- the policy could check one value while the tool acts on the other.
        raise RefusedError(ErrorCode.REQUEST_INVALID_JSON, "the JSON repeats an object member")
    return out


def _no_constant(name: str) -> Any:
    raise RefusedError(ErrorCode.REQUEST_INVALID_JSON, f"{name} is not JSON")


def trace_context(request: EnvoyRequest) -> tuple[str, str]:
    """A well-formed ``traceparent`` (W3C Trace Context §3.2) and its ``tracestate``.

    A malformed traceparent is dropped with its tracestate, as §3.2.2 and §3.3
    tell a receiver to do (start a new trace), rather than failing the call.
    """
    values = request.header_values("traceparent")
    if len(values) != 1:
        return "", ""
    parent = values[0].strip()
    fields = parent.split("-")
    if (
        len(parent) != 55
        or [len(f) for f in fields] != [2, 32, 16, 2]
        or not set(parent.replace("-", "")) <= _HEX
        or fields[0] == "ff"
        or set(fields[1]) == {"0"}
        or set(fields[2]) == {"0"}
    ):
        return "", ""
    state = ",".join(v.strip() for v in request.header_values("tracestate"))
    if len(state) > 512 or not state.isascii() or not state.isprintable():
        state = ""  # §3.3.1.5: drop what cannot be propagated whole
    return parent, state
