"""Request heads off the client connection: llhttp (via httptools), then a proxy's checks.

llhttp already refuses most of what makes request smuggling possible (RFC 9112
§6.3, §11.2): Content-Length together with Transfer-Encoding, duplicate or
non-numeric Content-Length, obs-fold (§5.2), bare CR, bad chunk sizes, a
Transfer-Encoding whose final coding is not chunked. On top of that this module
refuses what a *proxy* must not pass on ambiguously:

* a Transfer-Encoding other than exactly ``chunked`` (a coding we would have to
  decode to re-frame, RFC 9112 §6.1), and any Transfer-Encoding in HTTP/1.0;
* more than one Host (RFC 9112 §3.2: 400);
* content on a CONNECT (RFC 9110 §9.3.6: a CONNECT has no content, so bytes
  after its head belong to the tunnel -- two readings of one stream);
* versions other than HTTP/1.0 and 1.1 (llhttp also reads 0.9 and 2.0 heads);
* a head, target or header count over the limits, counted as bytes arrive so a
  slowly growing header cannot pile up inside the parser unseen.

:class:`RequestParser` is sans-io: bytes in, events out; bad input ends the
event stream with a :class:`Failed` event carrying the refusal. The fuzz tests
drive it directly and through a socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import httptools

from aegis.doors.proxy.responses import RequestRefusedError
from aegis.errors import ErrorCode

#: RFC 9110 §5.6.3: OWS is SP / HTAB. llhttp strips it before a value, not after.
_OWS = " \t"


@dataclass(slots=True)
class RequestHead:
    """One parsed request head. Names are lower-case; values keep their order and
    repeats, trimmed of OWS and decoded as ISO-8859-1 (RFC 9110 §5.5: field
    values are octets; latin-1 maps each one to one code point and back)."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    keep_alive: bool
    content_length: int | None
    chunked: bool
    upgrade: bool = False

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class Head(NamedTuple):
    head: RequestHead


class Body(NamedTuple):
    data: bytes


class End(NamedTuple):
    """The request's content is complete (RFC 9112 §6)."""


class Tunnel(NamedTuple):
    """The parser stopped at a CONNECT or an Upgrade; ``tail`` is what followed the head."""

    tail: bytes


class Failed(NamedTuple):
    """The input went wrong here. Events before it stand: a good request followed
    by a bad one in the same read is still served before the refusal."""

    refusal: RequestRefusedError


Event = Head | Body | End | Tunnel | Failed


def _bad(status: int, code: ErrorCode, reason: str) -> RequestRefusedError:
    """A refusal of bad input: the connection always closes after it, because
    where the next request would start is unknowable (RFC 9112 §11.2)."""
    return RequestRefusedError(status, code, reason, close=True)


def _framing_error(message: str) -> bool:
    text = message.lower()
    return "content-length" in text or "transfer-encoding" in text or "chunk" in text


def _header_error(message: str) -> bool:
    # llhttp's reasons for field syntax all name it: "Invalid header value char",
    # "Invalid header token", "Unexpected whitespace after header value" (obs-fold).
    return "header" in message.lower()


class RequestParser:
    """Feeds client bytes to llhttp; collects events; enforces the head limits."""

    def __init__(
        self,
        *,
        max_head_bytes: int = 64 * 1024,
        max_headers: int = 100,
        max_target_length: int = 8192,
    ) -> None:
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self.max_target_length = max_target_length
        self.events: list[Event] = []
        self.upgraded = False
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_size = 0
        self._in_head = False
        self._in_message = False
        self._stalled = 0
        self._progress = False
        self._refusal: RequestRefusedError | None = None
        #: Set once the input went wrong; the connection must end.
        self.failed: RequestRefusedError | None = None

    @property
    def in_message(self) -> bool:
        """A request has begun and not ended (its head or body is still arriving)."""
        return self._in_message

    @property
    def in_head(self) -> bool:
        return self._in_head

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the events it completed, ending with a Failed
        event if the input went wrong. Nothing is parsed after a failure."""
        if self.failed is not None:
            return [Failed(self.failed)]
        if self.upgraded:
            raise RuntimeError("the parser stopped at an upgrade")
        self.events = []
        self._progress = False
        if data and not self._in_message:
            self._in_head = self._in_message = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0] if upgrade.args else len(data)
            self.upgraded = True
            self.events.append(Tunnel(bytes(data[offset:])))
        except httptools.HttpParserError as exc:
            return self._fail(self._refusal or self._classify(exc))
        if self._progress:
            self._stalled = 0
        else:
            self._stalled += len(data)
            if self._stalled > self.max_head_bytes:
                # Bytes keep coming and nothing completes: a head growing past
                # the limit, or chunk framing and trailers with no content.
                if self._in_head:
                    return self._fail(
                        _bad(431, ErrorCode.REQUEST_TOO_LARGE, "request head too large")
                    )
                return self._fail(
                    _bad(400, ErrorCode.REQUEST_MALFORMED, "chunk framing without content")
                )
        return self.events

    def _fail(self, refusal: RequestRefusedError) -> list[Event]:
        self.failed = refusal
        self.events.append(Failed(refusal))
        return self.events

    def _classify(self, exc: httptools.HttpParserError) -> RequestRefusedError:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, httptools.HttpParserInvalidMethodError):
            return _bad(400, ErrorCode.REQUEST_MALFORMED, "invalid method")
        if isinstance(exc, httptools.HttpParserInvalidURLError):
            return _bad(400, ErrorCode.REQUEST_MALFORMED, f"invalid request-target: {message}")
        if _framing_error(message):
            return _bad(400, ErrorCode.REQUEST_AMBIGUOUS_LENGTH, message)
        if self._in_head and _header_error(message):
            return _bad(400, ErrorCode.REQUEST_INVALID_HEADER, message)
        return _bad(400, ErrorCode.REQUEST_MALFORMED, message)

    def _refuse(self, status: int, code: ErrorCode, reason: str) -> RequestRefusedError:
        self._refusal = _bad(status, code, reason)
        return self._refusal

    # -- httptools callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._in_head = self._in_message = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.max_target_length:
            raise self._refuse(414, ErrorCode.REQUEST_TOO_LARGE, "request-target too long")
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            # Trailer fields (RFC 9112 §7.1.2): a proxy that removes the chunked
            # coding may discard them, and we do. Their size is bounded by the
            # stall counter in feed().
            return
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1").rstrip(_OWS)))
        if len(self._headers) > self.max_headers:
            raise self._refuse(431, ErrorCode.REQUEST_TOO_LARGE, "too many header fields")
        self._count(len(name) + len(value) + 4)

    def _count(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.max_head_bytes:
            raise self._refuse(431, ErrorCode.REQUEST_TOO_LARGE, "request head too large")

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise self._refuse(505, ErrorCode.REQUEST_MALFORMED, f"HTTP/{version} is not supported")
        method = parser.get_method().decode("ascii")
        headers = self._headers
        if sum(1 for k, _ in headers if k == "host") > 1:
            raise self._refuse(400, ErrorCode.REQUEST_INVALID_HEADER, "more than one Host")
        te = [v for k, v in headers if k == "transfer-encoding"]
        cl = [v for k, v in headers if k == "content-length"]
        chunked = False
        if te:
            if version == "1.0":
                # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
                raise self._refuse(
                    400, ErrorCode.REQUEST_AMBIGUOUS_LENGTH, "Transfer-Encoding in HTTP/1.0"
                )
            if len(te) != 1 or te[0].strip(_OWS).lower() != "chunked":
                raise self._refuse(
                    400,
                    ErrorCode.REQUEST_AMBIGUOUS_LENGTH,
                    "Transfer-Encoding must be exactly 'chunked'",
                )
            chunked = True
        if cl and te:  # llhttp refuses this too; the framing must have one reading
            raise self._refuse(
                400, ErrorCode.REQUEST_AMBIGUOUS_LENGTH, "Content-Length with Transfer-Encoding"
            )
        content_length: int | None = None
        if cl:
            if len(cl) != 1 or not cl[0].isdigit() or not cl[0].isascii() or len(cl[0]) > 18:
                raise self._refuse(
                    400, ErrorCode.REQUEST_AMBIGUOUS_LENGTH, "invalid Content-Length"
                )
            content_length = int(cl[0])
        if method == "CONNECT" and (chunked or content_length):
            raise self._refuse(400, ErrorCode.REQUEST_MALFORMED, "a CONNECT request has no content")
        try:
            target = self._url.decode("ascii")
        except UnicodeDecodeError:
            raise self._refuse(
                400, ErrorCode.REQUEST_MALFORMED, "request-target is not ASCII"
            ) from None
        # should_keep_alive() is only meaningful inside this callback (llhttp
        # resets its flags when the message ends).
        head = RequestHead(
            method=method,
            target=target,
            version=version,
            headers=headers,
            keep_alive=parser.should_keep_alive(),
            content_length=content_length,
            chunked=chunked,
            upgrade=parser.should_upgrade(),
        )
        self._in_head = False
        self._progress = True
        self.events.append(Head(head))

    def on_body(self, body: bytes) -> None:
        self._progress = True
        self.events.append(Body(bytes(body)))

    def on_message_complete(self) -> None:
        self._in_message = False
        self._progress = True
        self.events.append(End())
