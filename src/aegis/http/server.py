"""An HTTP/1.1 server on asyncio and httptools (llhttp), shared by the HTTP doors.

Why not uvicorn/Starlette: DESIGN.md §5 measured a bare asyncio+httptools
endpoint at ~56k req/s and uvicorn+Starlette at ~8k on this machine; the
decision API's budget (≥ 20k decisions/s, p99 ≤ 5 ms) leaves no room for an
ASGI translation layer. This module is that bare layer, with the protections a
server facing untrusted agents needs:

* **Framing** (RFC 9112 §6): Content-Length and chunked bodies. A request
  whose length two parsers could read differently -- Content-Length together
  with Transfer-Encoding, repeated Content-Length, Transfer-Encoding on
  HTTP/1.0, a coding other than a final ``chunked`` -- is refused with 400
  ``request.ambiguous_length`` and the connection is closed (§6.3, request
  smuggling). llhttp (strict mode) refuses most of these itself, but accepts
  Transfer-Encoding on HTTP/1.0, codings before a final ``chunked``, HTTP/0.9
  request lines and a missing Host; the server refuses those, and checks the
  rest again itself so that a parser upgrade or leniency flag cannot reopen them.
* **Limits**: body bytes (413), head bytes and header count (431, RFC 6585
  §5), request-target length (414, RFC 9110 §15.5.15), concurrent connections,
  requests read ahead of their responses (pipelining depth).
* **Timeouts** against slow clients (slowloris): time to receive the head, the
  body, and idle keep-alive time; a client that stops reading its responses.
* **Order**: pipelined requests are answered in the order received
  (RFC 9112 §9.3.2), one handler at a time per connection.
* **Header injection**: CR, LF and NUL are refused in request header values
  (llhttp does, and so does the server) and never written in response headers
  (RFC 9110 §5.5): a handler echoing input cannot split a response.
* **Closing** (RFC 9112 §9.6): after a refusal the server half-closes and
  reads (and discards) for a short while before closing, so the client sees
  the error instead of a TCP reset of unread data.
* **Graceful stop**: stop accepting, close idle connections, let in-flight
  requests finish (their response says ``Connection: close``) until a
  deadline, then cancel what is left.

Every refusal the server makes carries the one JSON error body of the HTTP
layer (:func:`error_response`). A handler that raises is answered 500 with that
body and logged; it never hangs the connection.

Handlers are :data:`aegis.http.types.Handler`; they must not set framing
headers (Content-Length, Transfer-Encoding, Connection): the server owns them.
A handler's ``Connection: close`` is honoured.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Final

import httptools

from aegis.errors import ErrorCode
from aegis.http.types import Handler, HttpRequest, HttpResponse, json_response
from aegis.telemetry.log import JsonLog

__all__ = ["HttpLimits", "HttpServer", "ServerStats", "error_response"]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Per-server limits. Sizes in bytes, times in seconds.

    Timeouts are enforced by one sweep per server every ``min(timeouts) / 4``
    seconds (at most 0.5 s), so each may fire up to that much early or late.
    """

    #: Largest request body (decoded chunked size or Content-Length): 413 above.
    max_body_bytes: int = 1 << 20
    #: Request line plus header fields: 431 above (RFC 6585 §5).
    max_header_bytes: int = 16 * 1024
    #: Header fields per request: 431 above.
    max_headers: int = 100
    #: Request target: 414 above (RFC 9110 §15.5.15).
    max_url_bytes: int = 8 * 1024
    #: Open connections; further ones are closed as soon as they are accepted.
    max_connections: int = 1024
    #: Requests read ahead of their responses on one connection before the
    #: server stops reading from it (pipelining back-pressure).
    max_pipelined: int = 16
    #: From connecting, or from the first byte of a request, to its last header.
    header_timeout: float = 10.0
    #: From the end of the head to the end of the body.
    body_timeout: float = 30.0
    #: An idle keep-alive connection between requests.
    keepalive_timeout: float = 5.0
    #: A client that does not read its responses (write buffer full this long).
    write_timeout: float = 30.0
    #: After a refusal that closes: read and discard this long, then close.
    linger_timeout: float = 2.0

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_header_bytes",
            "max_headers",
            "max_url_bytes",
            "max_connections",
            "max_pipelined",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in self._timeouts():
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")

    @staticmethod
    def _timeouts() -> tuple[str, ...]:
        return (
            "header_timeout",
            "body_timeout",
            "keepalive_timeout",
            "write_timeout",
            "linger_timeout",
        )

    @property
    def sweep_interval(self) -> float:
        shortest = min(float(getattr(self, name)) for name in self._timeouts())
        return min(0.5, max(0.005, shortest / 4))


@dataclass(slots=True)
class ServerStats:
    """Counters of one server, for tests and operators (not Prometheus: the
    server does not know which door it serves; doors count refusals themselves
    through ``on_refusal``)."""

    connections_accepted: int = 0
    connections_refused: int = 0
    requests: int = 0
    refusals: int = 0
    handler_errors: int = 0
    timeouts: int = 0


def error_response(
    status: int,
    code: ErrorCode | str,
    message: str,
    *,
    path: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    error_type: str = "RequestError",
) -> HttpResponse:
    """The HTTP layer's one error body: ``{"error": {"type", "code", "message"[, "path"]}}``.

    Policy decisions use :meth:`aegis.core.decision.Decision.error_body` instead;
    both put a stable ``code`` under ``error`` (DESIGN.md §3 error model).
    """
    detail: dict[str, str] = {"type": error_type, "code": str(code), "message": message}
    if path is not None:
        detail["path"] = path
    return json_response(status, {"error": detail}, tuple(headers))


# -- wire constants -------------------------------------------------------------------

_CRLF: Final = b"\r\n"
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE: Final = b"connection: close\r\n"
_KEEP_ALIVE: Final = b"connection: keep-alive\r\n"
#: Headers whose meaning is framing, owned by the server (RFC 9112 §6, §9.6).
_SERVER_OWNED: Final = frozenset({"content-length", "transfer-encoding", "connection"})
#: Request headers the server itself interprets.
_WATCHED: Final = frozenset({"content-length", "transfer-encoding", "host", "expect"})
_NO_BODY_STATUS: Final = frozenset({204, 304})
_OWS: Final = (b" ", b"\t")

_STATUS_LINES: dict[int, bytes] = {}
_METHODS: dict[bytes, str] = {}
#: Lower-cased header names by their raw bytes; bounded so that clients
#: inventing names cannot grow it without limit.
_NAMES: dict[bytes, str] = {}
_NAMES_MAX = 512

_NONE, _IDLE, _HEAD, _BODY, _LINGER = 0, 1, 2, 3, 4
_PAUSE_PIPELINE, _PAUSE_WRITE, _PAUSE_DONE = 1, 2, 4


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
    return line


def _header_name(raw: bytes) -> str:
    name = _NAMES.get(raw)
    if name is None:
        name = raw.decode("latin-1").lower()
        if len(_NAMES) < _NAMES_MAX:
            _NAMES[raw] = name
    return name


class _RefusedError(Exception):
    """Raised inside a parser callback to stop llhttp; the refusal is on the connection."""


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int
    code: ErrorCode
    message: str
    headers: tuple[tuple[str, str], ...] = ()


def _classify(exc: httptools.HttpParserError) -> _Refusal:
    """Map llhttp's error (its message is all httptools exposes) to a refusal."""
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        # RFC 9110 §9.1: an unrecognised method is 501.
        return _Refusal(501, ErrorCode.REQUEST_MALFORMED, "unknown request method")
    text = str(exc)
    if "Content-Length" in text or "Transfer-Encoding" in text:
        # e.g. "Transfer-Encoding can't be present with Content-Length",
        # "Duplicate Content-Length": RFC 9112 §6.3 items 3-5.
        return _Refusal(400, ErrorCode.REQUEST_AMBIGUOUS_LENGTH, f"ambiguous length: {text}")
    if "header value char" in text or "after header value" in text:
        return _Refusal(400, ErrorCode.REQUEST_INVALID_HEADER, f"invalid header: {text}")
    if "HTTP version" in text:
        return _Refusal(505, ErrorCode.REQUEST_MALFORMED, "HTTP version not supported")
    return _Refusal(400, ErrorCode.REQUEST_MALFORMED, f"malformed request: {text}")


_QueueItem = tuple[HttpRequest | _Refusal, bool, bool, bool]
"""(request or refusal, keep_alive, head, http_1_0)"""


#: Bytes read from a socket at a time, into one buffer the server's connections share.
_READ_SIZE = 64 * 1024


class _Connection(asyncio.BufferedProtocol):
    """One client connection: llhttp callbacks in, ordered responses out.

    A BufferedProtocol: asyncio then reads with ``recv_into`` a buffer the
    server's connections share (one loop thread, and httptools copies what it
    hands to the callbacks) instead of allocating a 256 KiB bytes object per
    ``recv``, which alone costs ~5 µs a request.
    """

    __slots__ = (
        "_app",
        "_body",
        "_body_len",
        "_closed",
        "_content_length",
        "_continue_pending",
        "_deadline",
        "_deadline_kind",
        "_eof",
        "_expect",
        "_fed",
        "_head_bytes",
        "_head_mark",
        "_headers",
        "_headers_done",
        "_hosts",
        "_http11",
        "_in_message",
        "_limits",
        "_parser",
        "_paused",
        "_queue",
        "_reading_done",
        "_refusal",
        "_remote",
        "_server",
        "_task",
        "_transfer_encoding",
        "_transport",
        "_url",
        "_write_deadline",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._app = server.app
        self._limits = server.limits
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None
        self._queue: deque[_QueueItem] = deque()
        self._task: asyncio.Task[None] | None = None
        self._paused = 0
        self._closed = False
        self._eof = False
        self._reading_done = False
        self._refusal: _Refusal | None = None
        self._continue_pending = False
        self._deadline = math.inf
        self._deadline_kind = _NONE
        self._write_deadline = math.inf
        self._fed = 0
        self._head_mark = 0
        self._in_message = False
        self._reset_message()

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._headers_done = False
        self._content_length: int | None = None
        self._transfer_encoding: tuple[str, ...] = ()  # no allocation per request
        self._hosts = 0
        self._expect: str | None = None
        self._body: bytes | list[bytes] = b""  # one chunk usually; a list when more
        self._body_len = 0
        self._http11 = True

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        server = self._server
        if server.is_stopping or len(server.connections) >= self._limits.max_connections:
            # No error code fits a busy server, and a response before any
            # request is read is not HTTP; closing lets the client retry.
            server.stats.connections_refused += 1
            self._closed = self._reading_done = True
            transport.close()
            return
        server.stats.connections_accepted += 1
        server.connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self._remote = str(peer[0])
        # A connection that never sends a byte is closed silently.
        self._arm(_IDLE, self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        self._closed = True
        self._queue.clear()
        server = self._server
        server.connections.discard(self)
        task = self._task
        if task is not None and not task.done():
            # The handler is not cancelled (its stages may hold state that a
            # cancellation would leave half-done); the stop deadline bounds it.
            server.orphans.add(task)
            task.add_done_callback(server.orphans.discard)
        server.connection_closed()

    def get_buffer(self, sizehint: int) -> memoryview:  # noqa: ARG002
        return self._server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._server.read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """Feed llhttp (also the entry point for transports without buffered reads)."""
        if self._reading_done:
            return  # refused, closing or lingering: discard
        self._fed += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrade or CONNECT: llhttp stops after the request's head. The
            # server speaks no other protocol (RFC 9110 §7.8 lets it ignore
            # Upgrade); answer what was read, then close.
            self._stop_reading()
        except httptools.HttpParserError as exc:
            if self._reading_done:
                return  # bytes after "Connection: close": ignored (RFC 9112 §9.6)
            refusal = self._refusal
            if refusal is None:
                if isinstance(exc, httptools.HttpParserCallbackError):
                    self._server.log.error(
                        "http.callback_error", error=repr(exc.__context__)
                    )  # a bug of ours, not the client's: still refuse, and say so
                refusal = _classify(exc)
            self._refuse(refusal)
            return
        if (
            self._in_message
            and not self._headers_done
            and self._fed - self._head_mark > self._limits.max_header_bytes
        ):
            # httptools buffers a header until it is complete; this bounds a
            # never-ending one. Every byte fed after the chunk in which the
            # message began belongs to its head.
            self._refuse(_Refusal(431, ErrorCode.REQUEST_TOO_LARGE, "request head too large"))

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._deadline_kind == _LINGER:
            return False  # the client closed its side too: close
        if self._task is not None or self._queue:
            # Half-closed client (RFC 9112 §9.6): answer what was read, then close.
            self._stop_reading()
            return True
        return False

    def pause_writing(self) -> None:
        self._write_deadline = self._server.now + self._limits.write_timeout
        self._pause(_PAUSE_WRITE)

    def resume_writing(self) -> None:
        self._write_deadline = math.inf
        self._resume(_PAUSE_WRITE)

    # -- llhttp callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._head_mark = self._fed
        self._arm(_HEAD, self._limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if len(self._url) > self._limits.max_url_bytes:
            self._stop(_Refusal(414, ErrorCode.REQUEST_TOO_LARGE, "request target too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self._limits
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > limits.max_header_bytes or len(self._headers) >= limits.max_headers:
            self._stop(_Refusal(431, ErrorCode.REQUEST_TOO_LARGE, "header fields too large"))
        if b"\r" in value or b"\n" in value or b"\x00" in value:
            # llhttp refuses these already; a second check keeps a response
            # splitting vector closed whatever the parser's leniency flags.
            self._stop(_Refusal(400, ErrorCode.REQUEST_INVALID_HEADER, "CR, LF or NUL in a header"))
        key = _NAMES.get(name) or _header_name(name)
        if value[-1:] in _OWS:
            # llhttp drops leading whitespace only; RFC 9110 §5.5: not part of the value.
            value = value.rstrip(b" \t")
        # Field values are octets; latin-1 keeps obs-text (RFC 9110 §5.5) lossless.
        text = value.decode("latin-1")
        self._headers.append((key, text))
        if key in _WATCHED:
            self._watch(key, text)

    def _watch(self, key: str, value: str) -> None:
        if key == "content-length":
            if self._content_length is not None:
                # RFC 9110 §8.6 lets a recipient accept identical repeats; a
                # gateway refuses all repeats rather than guess which a peer uses.
                self._stop(
                    _Refusal(400, ErrorCode.REQUEST_AMBIGUOUS_LENGTH, "repeated Content-Length")
                )
            text = value.strip(" \t")
            if not (text.isascii() and text.isdigit()) or len(text) > 18:
                self._stop(_Refusal(400, ErrorCode.REQUEST_AMBIGUOUS_LENGTH, "bad Content-Length"))
            self._content_length = int(text)
        elif key == "transfer-encoding":
            self._transfer_encoding += (value,)
        elif key == "host":
            self._hosts += 1
        else:
            self._expect = value

    def on_headers_complete(self) -> None:
        self._headers_done = True
        limits = self._limits
        version = self._parser.get_http_version()
        if version not in ("1.1", "1.0"):
            self._stop(_Refusal(505, ErrorCode.REQUEST_MALFORMED, "HTTP version not supported"))
        self._http11 = http11 = version == "1.1"
        if self._transfer_encoding:
            self._check_transfer_encoding(http11)
        if http11 and self._hosts != 1:
            # RFC 9112 §3.2: exactly one Host in an HTTP/1.1 request, else 400.
            self._stop(_Refusal(400, ErrorCode.REQUEST_MALFORMED, "missing or repeated Host"))
        length = self._content_length
        if length is not None and length > limits.max_body_bytes:
            # Refused before the body is read, also under Expect: 100-continue.
            self._stop(_Refusal(413, ErrorCode.REQUEST_TOO_LARGE, "request body too large"))
        if self._expect is not None and http11:  # RFC 9110 §10.1.1: ignored in HTTP/1.0
            if self._expect.strip(" \t").lower() != "100-continue":
                self._stop(_Refusal(417, ErrorCode.REQUEST_INVALID_HEADER, "unsupported Expect"))
            if length != 0:
                if self._task is None and not self._queue:
                    self._write_raw(_CONTINUE)
                else:
                    # An interim response must not overtake earlier final ones.
                    self._continue_pending = True
        self._arm(_BODY, limits.body_timeout)

    def _check_transfer_encoding(self, http11: bool) -> None:
        if self._content_length is not None:
            self._stop(
                _Refusal(
                    400,
                    ErrorCode.REQUEST_AMBIGUOUS_LENGTH,
                    "Content-Length with Transfer-Encoding",
                )
            )
        if not http11:
            # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
            self._stop(
                _Refusal(400, ErrorCode.REQUEST_AMBIGUOUS_LENGTH, "Transfer-Encoding in HTTP/1.0")
            )
        codings = [c.strip(" \t").lower() for v in self._transfer_encoding for c in v.split(",")]
        if codings[-1] != "chunked" or codings.count("chunked") != 1:
            # RFC 9112 §6.3 item 4: chunked not final (or applied twice) -> 400, close.
            self._stop(_Refusal(400, ErrorCode.REQUEST_AMBIGUOUS_LENGTH, "bad Transfer-Encoding"))
        if len(codings) != 1:
            # RFC 9112 §6.1: a transfer coding the server does not implement -> 501.
            self._stop(_Refusal(501, ErrorCode.REQUEST_MALFORMED, "unsupported transfer coding"))

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        if self._body_len > self._limits.max_body_bytes:
            self._stop(_Refusal(413, ErrorCode.REQUEST_TOO_LARGE, "request body too large"))
        if not self._body:
            self._body = body
        elif isinstance(self._body, list):
            self._body.append(body)
        else:
            self._body = [self._body, body]

    def on_message_complete(self) -> None:
        parser = self._parser
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = _METHODS[raw_method] = raw_method.decode("ascii")
        url = self._url
        if url[:1] != b"/":
            url = self._origin_form(url)
        path, _, query = url.partition(b"?")
        body = self._body
        if isinstance(body, list):
            body = b"".join(body)
        request = HttpRequest(
            method,
            path.decode("latin-1"),
            query.decode("latin-1"),
            tuple(self._headers),
            body,
            self._remote,
        )
        keep_alive = parser.should_keep_alive()
        http10 = not self._http11
        self._in_message = False
        self._continue_pending = False
        self._deadline_kind = _NONE
        self._deadline = math.inf
        self._reset_message()
        self._server.stats.requests += 1
        if not keep_alive or self._server.is_stopping:
            self._stop_reading()
        self._dispatch((request, keep_alive, method == "HEAD", http10))

    @staticmethod
    def _origin_form(url: bytes) -> bytes:
        """RFC 9112 §3.2.2: a server MUST accept the absolute form; keep path and query."""
        if url == b"*":
            return url  # asterisk-form (OPTIONS *): no route matches it
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            return b"/\x00invalid"  # matches no route: 404
        path = parsed.path or b"/"
        return path + b"?" + parsed.query if parsed.query else path

    # -- dispatch and responses --------------------------------------------------

    def _stop(self, refusal: _Refusal) -> None:
        """From a parser callback: record the refusal and stop llhttp."""
        self._refusal = refusal
        raise _RefusedError(refusal.message)

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer ``refusal`` in order after what was already read, then close."""
        server = self._server
        server.stats.refusals += 1
        if server.on_refusal is not None:
            server.on_refusal(refusal.code)
        self._stop_reading()
        self._in_message = False  # what was read of it is abandoned
        self._pause(_PAUSE_DONE)
        self._dispatch((refusal, False, False, False))

    def _stop_reading(self) -> None:
        self._reading_done = True
        if self._deadline_kind in (_HEAD, _BODY, _IDLE):
            self._deadline_kind = _NONE
            self._deadline = math.inf

    def _dispatch(self, item: _QueueItem) -> None:
        if self._task is not None:
            self._queue.append(item)
            if len(self._queue) >= self._limits.max_pipelined:
                self._pause(_PAUSE_PIPELINE)
        elif isinstance(item[0], _Refusal):
            self._respond(self._refusal_response(item[0]), item)
            self._after_responses()
        else:
            self._task = self._server.loop.create_task(self._serve(item))

    async def _serve(self, item: _QueueItem) -> None:
        """Answer ``item`` and then every queued item, in order."""
        app = self._app
        queue = self._queue
        try:
            while True:
                message = item[0]
                if isinstance(message, HttpRequest):
                    try:
                        response = await app(message)
                    except Exception as exc:  # a handler bug is a 500, never a hang
                        response = self._internal_error(exc, message)
                    else:
                        if not isinstance(response, HttpResponse):
                            response = self._internal_error(
                                TypeError(f"handler returned {type(response).__name__}"), message
                            )
                else:
                    response = self._refusal_response(message)
                if self._closed:
                    return
                self._respond(response, item)
                if not queue:
                    break
                item = queue.popleft()
                if self._paused & _PAUSE_PIPELINE and len(queue) < self._limits.max_pipelined:
                    self._resume(_PAUSE_PIPELINE)
        finally:
            self._task = None
        self._after_responses()

    def _after_responses(self) -> None:
        """Every response so far is written: close, linger, or wait for the next request."""
        if self._closed:
            return
        if self._reading_done:
            self._close_lingering()
        elif not self._in_message:
            self._arm(_IDLE, self._limits.keepalive_timeout)
        elif self._continue_pending:
            self._continue_pending = False
            self._write_raw(_CONTINUE)

    def _refusal_response(self, refusal: _Refusal) -> HttpResponse:
        return error_response(
            refusal.status, refusal.code, refusal.message, headers=refusal.headers
        )

    def _internal_error(self, exc: BaseException, request: HttpRequest) -> HttpResponse:
        server = self._server
        server.stats.handler_errors += 1
        with contextlib.suppress(Exception):  # logging must not turn a 500 into a hang
            server.log.error(
                "http.handler_error",
                method=request.method,
                path=request.path[:256],
                error=f"{type(exc).__name__}: {exc}",
                traceback="".join(traceback.format_exception(exc))[-4000:],
            )
        return error_response(
            500, ErrorCode.PIPELINE_INTERNAL_ERROR, "internal error", error_type="InternalError"
        )

    def _respond(self, response: HttpResponse, item: _QueueItem) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        status = response.status
        headers = response.headers
        close = not item[1] or (self._reading_done and not self._queue)
        try:
            lines = []
            for name, value in headers:
                if name.lower() in _SERVER_OWNED:  # any spelling: two lengths would smuggle
                    if name.lower() == "connection" and value.strip().lower() == "close":
                        close = True
                    continue
                lines.append(f"{name}: {value}\r\n")
            block = "".join(lines)
            # Each line holds exactly one CR and one LF, its own: anything else
            # in a name or value would split the response (RFC 9110 §5.5).
            if (
                block.count("\n") != len(lines)
                or block.count("\r") != len(lines)
                or "\x00" in block
                or not 200 <= status <= 599
            ):
                raise ValueError("invalid status or CR/LF/NUL in a response header")
            head = block.encode("latin-1")
        except Exception as exc:  # any bad response from a handler is a 500
            response = self._internal_error(exc, _NO_REQUEST)
            status, head = 500, b"content-type: application/json\r\n"
        body = response.body
        if status in _NO_BODY_STATUS:
            length = b""
            body = b""
        else:
            length = b"content-length: %d\r\n" % len(body)
            if item[2]:  # HEAD: the GET's headers, no content (RFC 9110 §9.3.2)
                body = b""
        server = self._server
        if close:
            conn = _CLOSE
            self._stop_reading()
            # Nothing read after a response that closes is answered (RFC 9112 §9.6).
            self._queue.clear()
        elif item[3]:
            conn = _KEEP_ALIVE  # HTTP/1.0 keeps the connection only when told so
        else:
            conn = b""
        transport.write(
            b"".join(
                (
                    _status_line(status),
                    server.date_line,
                    server.server_line,
                    head,
                    length,
                    conn,
                    _CRLF,
                    body,
                )
            )
        )

    def _write_raw(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    # -- flow control, timeouts, closing -------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self._paused and self._transport is not None and not self._closed:
            self._transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        was = self._paused
        self._paused &= ~reason
        if was and not self._paused and self._transport is not None and not self._closed:
            self._transport.resume_reading()
            if self._deadline_kind in (_HEAD, _BODY):
                # Time spent not reading was the server's doing, not the client's.
                self._arm(self._deadline_kind, self._timeout_of(self._deadline_kind))

    def _timeout_of(self, kind: int) -> float:
        return self._limits.header_timeout if kind == _HEAD else self._limits.body_timeout

    def _arm(self, kind: int, seconds: float) -> None:
        self._deadline_kind = kind
        self._deadline = self._server.now + seconds

    def check_deadlines(self, now: float) -> None:
        """Called by the server's sweep."""
        if self._closed or self._transport is None:
            return
        if now >= self._write_deadline:
            self._server.stats.timeouts += 1
            self.abort()
            return
        if now < self._deadline:
            return
        kind = self._deadline_kind
        if kind in (_IDLE, _LINGER):
            # An idle connection may be closed at any time (RFC 9112 §9.5).
            self._closed = True
            self._transport.close()
        elif kind in (_HEAD, _BODY):
            if self._paused & (_PAUSE_PIPELINE | _PAUSE_WRITE):
                self._arm(kind, self._timeout_of(kind))
                return
            self._server.stats.timeouts += 1
            # RFC 9110 §15.5.9: 408 and close. No code says "timeout" at the
            # request level; the request could not be read, so: malformed.
            self._refuse(_Refusal(408, ErrorCode.REQUEST_MALFORMED, "request not received in time"))

    def _close_lingering(self) -> None:
        """Half-close, then read and discard until the client closes or the linger
        time passes, so that unread request bytes do not turn our last response
        into a TCP reset on the client's side (RFC 9112 §9.6)."""
        transport = self._transport
        if transport is None or self._closed or self._deadline_kind == _LINGER:
            return
        self._arm(_LINGER, self._limits.linger_timeout)
        if not self._eof and transport.can_write_eof():
            transport.write_eof()
            self._paused = 0
            transport.resume_reading()
        else:
            self._closed = True
            transport.close()

    def shutdown(self) -> None:
        """Graceful stop: finish what was read, answer it with Connection: close."""
        if self._closed:
            return
        if (self._task is None and not self._in_message) or self._deadline_kind == _LINGER:
            self._closed = True
            if self._transport is not None:
                self._transport.close()
        elif not self._in_message:
            self._stop_reading()
        # A request half received is left to finish (its timeouts still apply);
        # on_message_complete stops reading after it.

    def abort(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.abort()


#: Stands in for the request when a response, not a request, was at fault.
_NO_REQUEST: Final = HttpRequest("-", "-")


class HttpServer:
    """An HTTP/1.1 server for one :data:`~aegis.http.types.Handler` (usually a Router).

    ::

        server = HttpServer(router, HttpLimits())
        port = await server.start("127.0.0.1", 0)
        ...
        await server.stop(grace_seconds=5)

    ``on_refusal`` is called with the code of every request the server itself
    refuses (limits, framing, timeouts), so a door can count them.
    """

    def __init__(
        self,
        app: Handler,
        limits: HttpLimits | None = None,
        *,
        log: JsonLog | None = None,
        on_refusal: Callable[[ErrorCode], None] | None = None,
        server_header: str | None = None,
    ) -> None:
        self.app = app
        self.limits = limits if limits is not None else HttpLimits()
        self.log = log if log is not None else JsonLog(level="warning")
        self.on_refusal = on_refusal
        self.stats = ServerStats()
        self.connections: set[_Connection] = set()
        #: Handler tasks whose client went away; cancelled at the stop deadline.
        self.orphans: set[asyncio.Task[None]] = set()
        self.server_line = b"" if server_header is None else f"server: {server_header}\r\n".encode()
        self.date_line = b""
        self.read_buffer = memoryview(bytearray(_READ_SIZE))
        self.now = 0.0
        self.is_stopping = False
        self._date_second = -1
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._drained: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "server not started"
        return self._loop

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._port

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, backlog: int = 1024) -> int:
        """Bind and start accepting; return the bound port (``port=0``: ephemeral)."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        self._drained = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tick()
        self._server = await self._loop.create_server(
            lambda: _Connection(self), host, port, backlog=backlog
        )
        sockname = self._server.sockets[0].getsockname()
        self._port = int(sockname[1])
        self._sweeper = self._loop.create_task(self._sweep())
        return self._port

    async def serve_forever(self) -> None:
        """Wait until :meth:`stop` has finished (start first)."""
        if self._stopped is None:
            raise RuntimeError("server not started")
        await self._stopped.wait()

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop accepting; close idle connections; let in-flight requests finish for
        up to ``grace_seconds``; then cancel what is left and close everything."""
        if self._server is None or self.is_stopping:
            if self._stopped is not None:
                await self._stopped.wait()
            return
        self.is_stopping = True
        self._server.close()
        for conn in list(self.connections):
            conn.shutdown()
        assert self._drained is not None
        if self.connections or self.orphans:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), grace_seconds)
        for conn in list(self.connections):
            conn.abort()
        for task in list(self.orphans):
            task.cancel()
        if self.orphans:
            await asyncio.wait(list(self.orphans), timeout=1.0)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await asyncio.sleep(0)  # let aborted transports deliver connection_lost
        await self._server.wait_closed()
        assert self._stopped is not None
        self._stopped.set()

    def connection_closed(self) -> None:
        if self.is_stopping and not self.connections and not self.orphans:
            assert self._drained is not None
            self._drained.set()

    def _tick(self) -> None:
        self.now = self.loop.time()
        second = int(time.time())
        if second != self._date_second:
            # RFC 9110 §6.6.1: an origin server with a clock sends Date; one
            # second's resolution is all the format has, so it is cached.
            self._date_second = second
            self.date_line = f"date: {formatdate(second, usegmt=True)}\r\n".encode()

    async def _sweep(self) -> None:
        interval = self.limits.sweep_interval
        while True:
            await asyncio.sleep(interval)
            self._tick()
            now = self.now
            for conn in list(self.connections):
                try:
                    conn.check_deadlines(now)
                except Exception as exc:  # one bad connection must not end all timeouts
                    self.log.error("http.sweep_error", error=repr(exc))
                    conn.abort()
            if self.is_stopping and not self.orphans and not self.connections:
                assert self._drained is not None
                self._drained.set()
