"""Forwarding a permitted absolute-form request: the upstream hop, and the response
streamed back as it arrives (never a whole body in memory).

The request goes out in origin-form (RFC 9112 §3.2.1) with the target's Host,
without hop-by-hop fields, with this hop in Via, and framed by the proxy:
Content-Length for a buffered body, chunked for a streamed one of unknown length.
The response is parsed by llhttp (which refuses a response framed two ways, as it
does for requests) and relayed message by message:

* a response without content (to HEAD, 1xx, 204, 304; RFC 9112 §6.3 rule 1) is
  relayed as its head;
* Content-Length framing is kept: the same length, the bytes as they come;
* chunked or close-delimited content goes to an HTTP/1.1 client re-chunked (the
  connection can stay open) and to an HTTP/1.0 client close-delimited;
* interim 1xx responses are relayed to HTTP/1.1 clients (RFC 9110 §15.2), except
  100 Continue: the proxy answered the client's expectation itself and did not
  forward it.

If the upstream fails before the response head reached the client, the caller
answers 502 (``request.upstream_failed``); after that, the only honest signal
left is to close the client connection without completing the message, so the
client sees a truncated response and not a complete wrong one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httptools

from aegis.doors.proxy.headers import RESPONSE_REBUILT, end_to_end, via

#: Dial ``(host, port)``; production uses :func:`open_tcp`. Tests and deployments
#: that resolve names their own way pass another (it receives the parsed host
#: the policy decided on, IPv6 without brackets).
Connector = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

#: Bytes of a response head (status line and fields) the proxy will hold.
MAX_RESPONSE_HEAD = 256 * 1024
_LAST_CHUNK = b"0\r\n\r\n"


async def open_tcp(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port)


class UpstreamError(Exception):
    """The upstream could not be reached, or failed before the response head was relayed."""


class RelayAbortedError(Exception):
    """The upstream failed after part of the response reached the client."""


@dataclass(eq=False)
class UpstreamConnection:
    host: str
    port: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reusable: bool = True
    used: int = 0

    def usable_for(self, host: str, port: int) -> bool:
        return (
            self.reusable
            and self.host == host
            and self.port == port
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.reusable = False
        self.writer.close()


async def connect_upstream(
    connector: Connector, host: str, port: int, timeout: float
) -> UpstreamConnection:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await connector(host, port)
    except TimeoutError:
        raise UpstreamError(f"connecting to {host}:{port} timed out") from None
    except OSError as exc:
        raise UpstreamError(f"connecting to {host}:{port} failed: {exc.strerror or exc}") from None
    return UpstreamConnection(host, port, reader, writer)


def request_head(
    method: str, origin_form: str, authority: str, headers: list[tuple[str, str]]
) -> bytes:
    lines = [f"{method} {origin_form} HTTP/1.1", f"host: {authority}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


# -- the response side ---------------------------------------------------------------


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: bytes
    headers: list[tuple[str, str]]
    keep_alive: bool
    content_length: int | None
    chunked: bool
    version: str = "1.1"


@dataclass(slots=True)
class _Body:
    data: bytes


@dataclass(slots=True)
class _End:
    pass


class _StopParsingError(Exception):
    """Raised from a callback to stop llhttp: after the head of a response to HEAD
    (llhttp does not know the request method and would wait for the content that
    Content-Length announces but such a response never carries), or at bytes
    following a complete response (nothing may follow it on this connection)."""


class ResponseParser:
    """Upstream bytes in, ResponseHead / body / end events out."""

    def __init__(self, *, head_only: bool = False) -> None:
        self.head_only = head_only
        self.events: list[ResponseHead | _Body | _End] = []
        self.finished = False
        self.trailing_data = False
        self._parser = httptools.HttpResponseParser(self)
        self._reason = b""
        self._headers: list[tuple[str, str]] = []
        self._head_size = 0
        self._in_head = True
        self._status = 0

    def feed(self, data: bytes) -> list[ResponseHead | _Body | _End]:
        self.events = []
        if self.finished:
            self.trailing_data = self.trailing_data or bool(data)
            return self.events
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise UpstreamError("the upstream switched protocols unasked") from None
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _StopParsingError) or self.finished:
                self.trailing_data = self.trailing_data or not self.head_only
                return self.events
            raise UpstreamError(f"invalid response: {exc}") from None
        if self._in_head:
            self._head_size += len(data)
            if self._head_size > MAX_RESPONSE_HEAD:
                raise UpstreamError("response head too large")
        return self.events

    # -- httptools callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.finished:
            raise _StopParsingError
        self._reason = b""
        self._headers = []
        self._in_head = True
        self._head_size = 0

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # trailer fields are dropped (RFC 9112 §7.1.2)
            self._headers.append(
                (name.decode("latin-1").lower(), value.decode("latin-1").rstrip(" \t"))
            )

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._status = status = parser.get_status_code()
        headers = self._headers
        cl = [v for k, v in headers if k == "content-length"]
        te = [v for k, v in headers if k == "transfer-encoding"]
        chunked = bool(te) and te[-1].rsplit(",", 1)[-1].strip(" \t").lower() == "chunked"
        self._in_head = False
        self.events.append(
            ResponseHead(
                status=status,
                reason=self._reason,
                headers=headers,
                # Only meaningful inside this callback: llhttp resets it at the end.
                keep_alive=parser.should_keep_alive(),
                content_length=int(cl[0]) if cl and not te else None,
                chunked=chunked,
                version=parser.get_http_version(),
            )
        )
        if self.head_only and status >= 200:
            self.events.append(_End())
            self.finished = True
            raise _StopParsingError

    def on_body(self, body: bytes) -> None:
        self.events.append(_Body(bytes(body)))

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:
            return  # an interim response is a message of its own; the final one follows
        self.events.append(_End())
        self.finished = True


@dataclass(slots=True)
class RelayResult:
    status: int
    keep_client: bool
    reuse_upstream: bool
    body_bytes: int


def _no_content(method: str, status: int) -> bool:
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200


def _client_head(
    head: ResponseHead,
    headers: list[tuple[str, str]],
) -> bytes:
    reason = head.reason.decode("latin-1") or "-"
    lines = [f"HTTP/1.1 {head.status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def relay_response(
    upstream: UpstreamConnection,
    client: asyncio.StreamWriter,
    *,
    method: str,
    client_version: str,
    client_keep_alive: Callable[[], bool],
    pseudonym: str,
    extra_headers: list[tuple[str, str]],
    timeout: float,
    buffer_size: int,
) -> RelayResult:
    """Relay one response from ``upstream`` to ``client`` as it arrives.

    ``client_keep_alive`` is asked when the final head is written (a server that
    began draining meanwhile closes the connection after this response).
    Raises UpstreamError before anything reached the client, RelayAbortedError after.
    """
    parser = ResponseParser(head_only=method == "HEAD")
    final: ResponseHead | None = None
    rechunk = close_delimited = False
    keep_client = False
    sent = 0
    reader = upstream.reader
    while True:
        try:
            async with asyncio.timeout(timeout):
                data = await reader.read(buffer_size)
        except TimeoutError:
            if final is None:
                raise UpstreamError(f"no response within {timeout}s") from None
            raise RelayAbortedError("the upstream stalled") from None
        except OSError as exc:
            if final is None:
                raise UpstreamError(f"reading the response failed: {exc}") from None
            raise RelayAbortedError(str(exc)) from None
        if not data:
            if final is not None and close_delimited:
                # RFC 9112 §6.3 rule 8: the content ends when the connection does.
                if rechunk:
                    client.write(_LAST_CHUNK)
                    await client.drain()
                upstream.reusable = False
                return RelayResult(final.status, keep_client, False, sent)
            if final is None:
                raise UpstreamError("the upstream closed the connection before responding")
            raise RelayAbortedError("the upstream closed the connection mid-response")
        try:
            events = parser.feed(data)
        except UpstreamError:
            if final is None:
                raise
            raise RelayAbortedError("invalid response content") from None
        out: list[bytes] = []
        done = False
        for event in events:
            if isinstance(event, ResponseHead):
                if event.status < 200:
                    if event.status == 101:
                        raise UpstreamError("the upstream switched protocols unasked")
                    if event.status != 100 and client_version == "1.1":
                        interim = end_to_end(event.headers, RESPONSE_REBUILT)
                        out.append(_client_head(event, interim))
                    continue
                final = event
                keep_client = client_keep_alive()
                headers = end_to_end(event.headers, RESPONSE_REBUILT)
                headers.append(("via", via(event.headers, event.version, pseudonym)))
                headers.extend(extra_headers)
                if _no_content(method, event.status):
                    if event.status != 204 and event.content_length is not None:
                        headers.append(("content-length", str(event.content_length)))
                elif event.content_length is not None:
                    headers.append(("content-length", str(event.content_length)))
                elif client_version == "1.1":
                    rechunk = True
                    close_delimited = not event.chunked
                    headers.append(("transfer-encoding", "chunked"))
                else:
                    close_delimited = not event.chunked
                    keep_client = False  # an HTTP/1.0 client reads to the close
                if not keep_client:
                    headers.append(("connection", "close"))
                out.append(_client_head(event, headers))
            elif isinstance(event, _Body):
                if event.data:
                    sent += len(event.data)
                    out.append(chunk(event.data) if rechunk else event.data)
            else:
                if final is None:  # pragma: no cover - llhttp ends only after a head
                    continue
                if rechunk:
                    out.append(_LAST_CHUNK)
                done = True
        if out:
            try:
                client.write(b"".join(out))
                await client.drain()
            except (ConnectionError, RuntimeError) as exc:
                upstream.reusable = False
                raise RelayAbortedError(f"the client went away: {exc}") from None
        if done:
            assert final is not None
            # A response to HEAD stopped the parser at its head: whatever else
            # the upstream sent is unknowable, so its connection is not reused.
            reuse = final.keep_alive and not parser.trailing_data and not parser.head_only
            upstream.reusable = upstream.reusable and reuse
            return RelayResult(final.status, keep_client, reuse, sent)
