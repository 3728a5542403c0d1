"""The forward proxy server: one asyncio task per client connection.

Per connection, requests are served one at a time in order (HTTP/1.1
pipelining is read correctly but not parallelised, RFC 9112 §9.3.2):

1. read a request head (``head_timeout`` from its first byte; slowloris -> 408);
2. CONNECT -> :meth:`ForwardProxy._tunnel`; absolute-form -> :meth:`ForwardProxy._http`;
   anything else -> 400;
3. identity from Proxy-Authorization (407), the target through the WHATWG parser
   (400), the body buffered for inspection up to its limit (413/415);
4. one ToolCall, ``await pipeline.decide(call, ctx)``; a decision that does not
   permit the call is answered here and nothing is sent upstream;
5. forward (sanitized if so decided) and relay the response as it streams.

A framing error closes the connection (the next request's start is unknowable,
RFC 9112 §9.3 / §11.2); so does any answer given while request bytes are still
unread. Upstream connections are kept per client connection and reused for the
same host and port: no agent's request ever rides a connection opened for
another client.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from aegis.core.decision import Decision, Outcome
from aegis.doors.proxy.calls import (
    InspectedBody,
    Rewrite,
    UninspectableBodyError,
    connect_call,
    http_call,
    inspect_body,
    rewrite_for_sanitize,
)
from aegis.doors.proxy.client import ClientGoneError, ClientReader
from aegis.doors.proxy.config import ProxyConfig, UninspectedBody
from aegis.doors.proxy.forwarding import (
    Connector,
    RelayAbortedError,
    UpstreamConnection,
    UpstreamError,
    chunk,
    connect_upstream,
    open_tcp,
    relay_response,
    request_head,
)
from aegis.doors.proxy.headers import REQUEST_REBUILT, end_to_end, via
from aegis.doors.proxy.identity import identify
from aegis.doors.proxy.parsing import Body, End, RequestHead, Tunnel
from aegis.doors.proxy.responses import (
    RequestRefusedError,
    decision_response,
    refusal_response,
    render,
)
from aegis.doors.proxy.target import Target, parse_absolute_target, parse_connect_target
from aegis.doors.proxy.tunnel import splice
from aegis.errors import ErrorCode
from aegis.pipeline import Pipeline, RequestContext
from aegis.pipeline.wire import decision_headers
from aegis.telemetry import GatewayMetrics, JsonLog

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: RFC 9110 §9.2.2: a request that failed on a reused connection before any
#: response byte may be sent again on a new one only if repeating it is harmless.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_LINGER_MAX_BYTES = 1 << 20


@dataclass(eq=False)
class _Connection:
    """What the server tracks about one client connection."""

    task: asyncio.Task[Any] | None
    remote_addr: str | None
    idle: bool = True
    upstream: UpstreamConnection | None = None

    def drop_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None


@dataclass(eq=False)
class _Request:
    """Per-request state the steps of :meth:`ForwardProxy._http` share."""

    head: RequestHead
    #: Request bytes still unread on the client connection: any answer closes it.
    body_pending: bool
    forwarded: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    inspected: InspectedBody | None = None
    #: The refusal ``uninspected_body: refuse`` would have given; a sanitize
    #: decision on an uninspected body is answered with it.
    uninspected: RequestRefusedError | None = None
    #: Body bytes already read when streaming was chosen (an over-limit chunked body).
    stream_prefix: bytes | None = None
    streaming: bool = False


class ForwardProxy:
    """The HTTP/1.1 egress forward proxy. Build with :func:`build_forward_proxy`."""

    def __init__(
        self,
        pipeline: Pipeline,
        config: ProxyConfig,
        *,
        metrics: GatewayMetrics | None,
        log: JsonLog | None,
        connect: Connector | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.config = config
        self.metrics = metrics
        self.log = log
        self.connect: Connector = connect if connect is not None else open_tcp
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._draining = False
        self._bearer = config.bearer_identity is not None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_connections(self) -> int:
        return len(self._connections)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: an ephemeral port); return the bound port."""
        if self._server is not None:
            raise RuntimeError("the proxy is already started")
        self._draining = False
        self._server = await asyncio.start_server(
            self._on_client, host, port, limit=self.config.buffer_size
        )
        bound = self.port
        assert bound is not None
        if self.log is not None:
            self.log.info("proxy.started", door=self.config.door, host=host, port=bound)
        return bound

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, close idle connections, let requests and tunnels in
        flight finish until ``grace`` seconds have passed, then cut them off."""
        server, self._server = self._server, None
        if server is None:
            return
        self._draining = True
        server.close()
        for conn in list(self._connections):
            if conn.idle and conn.task is not None:
                conn.task.cancel()
        tasks = [c.task for c in self._connections if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(grace, 0.0))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()
        if self.log is not None:
            self.log.info("proxy.stopped", door=self.config.door)

    # -- one connection ----------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        remote = str(peer[0]) if isinstance(peer, tuple) and peer else None
        conn = _Connection(asyncio.current_task(), remote)
        if len(self._connections) >= self.config.max_connections or self._draining:
            # Shed load before reading anything: 503 with Retry-After (RFC 9110 §15.6.4).
            if self.log is not None:
                self.log.warning("proxy.overloaded", door=self.config.door, remote_addr=remote)
            with contextlib.suppress(Exception):
                writer.write(render(503, [("retry-after", "1")], close=True))
                await writer.drain()
            writer.close()
            return
        self._connections.add(conn)
        client = ClientReader(reader, self.config)
        try:
            await self._serve(conn, client, writer)
        except asyncio.CancelledError:
            pass  # stop(): the connection ends here
        except (ConnectionError, ClientGoneError, TimeoutError):
            pass  # the client went away or stalled mid-request; nothing left to tell it
        except Exception as exc:  # a bug must never take the server down
            if self.log is not None:
                self.log.error(
                    "proxy.internal_error",
                    door=self.config.door,
                    error=f"{type(exc).__name__}: {exc}",
                    remote_addr=remote,
                )
        finally:
            self._connections.discard(conn)
            conn.drop_upstream()
            writer.close()

    async def _serve(
        self, conn: _Connection, client: ClientReader, writer: asyncio.StreamWriter
    ) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        deadline: float | None = loop.time() + cfg.head_timeout  # the first head
        while not self._draining or deadline is not None:
            conn.idle = True
            try:
                head = await client.read_head(
                    idle_timeout=cfg.idle_timeout, head_timeout=cfg.head_timeout, deadline=deadline
                )
            except RequestRefusedError as refusal:
                await self._refuse(conn, client, writer, refusal, close=True)
                return
            conn.idle = False
            deadline = None
            if head is None:
                return
            if head.method == "CONNECT":
                await self._tunnel(conn, client, writer, head)
                return
            if not await self._http(conn, client, writer, head):
                return

    # -- answers given by the proxy itself -----------------------------------------------

    def _count_refusal(self, refusal: RequestRefusedError, remote: str | None) -> None:
        if self.metrics is not None:
            self.metrics.requests_refused.labels(self.config.door, str(refusal.code)).inc()
        if self.log is not None:
            self.log.info(
                "proxy.request_refused",
                door=self.config.door,
                status=refusal.status,
                code=str(refusal.code),
                reason=refusal.reason,
                remote_addr=remote,
            )

    async def _refuse(
        self,
        conn: _Connection,
        client: ClientReader,
        writer: asyncio.StreamWriter,
        refusal: RequestRefusedError,
        *,
        close: bool,
    ) -> None:
        self._count_refusal(refusal, conn.remote_addr)
        writer.write(
            refusal_response(refusal, realm=self.config.realm, bearer=self._bearer, close=close)
        )
        await writer.drain()
        if close:
            await self._linger_close(conn, client, writer)

    async def _linger_close(
        self, conn: _Connection, client: ClientReader, writer: asyncio.StreamWriter
    ) -> None:
        """Half-close, then read and drop what the client still sends, briefly.

        Closing a socket with unread input makes the kernel send a reset, which
        can destroy the answer before the client read it (RFC 9112 §9.6). The
        connection counts as idle meanwhile: stop() need not wait for it.
        """
        conn.idle = True
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(self.config.linger_timeout):
                dropped = 0
                while dropped < _LINGER_MAX_BYTES:
                    data = await client.reader.read(self.config.buffer_size)
                    if not data:
                        break
                    dropped += len(data)
        writer.close()

    async def _answer_decision(
        self,
        conn: _Connection,
        client: ClientReader,
        writer: asyncio.StreamWriter,
        decision: Decision,
        *,
        close: bool,
    ) -> None:
        writer.write(
            decision_response(decision, realm=self.config.realm, bearer=self._bearer, close=close)
        )
        await writer.drain()
        if close:
            await self._linger_close(conn, client, writer)

    def _context(self, conn: _Connection, token: str | None) -> RequestContext:
        return RequestContext(
            door=self.config.door, credentials=token, remote_addr=conn.remote_addr
        )

    # -- plain HTTP --------------------------------------------------------------------

    async def _http(
        self,
        conn: _Connection,
        client: ClientReader,
        writer: asyncio.StreamWriter,
        head: RequestHead,
    ) -> bool:
        """Serve one absolute-form request; True when the connection stays open."""
        req = _Request(head, body_pending=head.has_body)
        keep = head.keep_alive and not head.upgrade
        try:
            target = parse_absolute_target(head.target)
            identity = identify(
                head.get_all("proxy-authorization"), bearer_identity=self.config.bearer_identity
            )
            expect = head.get("expect")
            if expect is not None and expect.lower() != "100-continue":
                raise RequestRefusedError(
                    417, ErrorCode.REQUEST_INVALID_HEADER, "only Expect: 100-continue is understood"
                )
            req.forwarded = end_to_end(head.headers, REQUEST_REBUILT)
            if head.has_body:
                await self._read_body(client, writer, req, expect_continue=expect is not None)
            call = http_call(
                self.config,
                identity,
                head,
                target,
                forwarded=req.forwarded,
                body=req.inspected,
                has_body=head.has_body,
            )
            result = await self.pipeline.decide(call, self._context(conn, identity.token))
            decision = result.decision
            if not decision.permits:
                close = req.body_pending or not keep or self._draining
                await self._answer_decision(conn, client, writer, decision, close=close)
                return not close
            rewrite = Rewrite()
            if decision.outcome is Outcome.SANITIZE:
                if req.uninspected is not None:
                    # The obligation covers content the policy never saw.
                    raise req.uninspected
                if decision.sanitized_params is not None:
                    rewrite = rewrite_for_sanitize(
                        call.params,
                        decision.sanitized_params,
                        req.forwarded,
                        self.config,
                        req.inspected,
                    )
        except RequestRefusedError as refusal:
            close = refusal.close or req.body_pending or not keep or self._draining
            await self._refuse(conn, client, writer, refusal, close=close)
            return not close
        except TimeoutError:
            answer = RequestRefusedError(
                408, ErrorCode.REQUEST_MALFORMED, "the request body stopped arriving", close=True
            )
            await self._refuse(conn, client, writer, answer, close=True)
            return False
        return await self._forward(
            conn, client, writer, req, target=target, decision=decision, rewrite=rewrite, keep=keep
        )

    async def _read_body(
        self,
        client: ClientReader,
        writer: asyncio.StreamWriter,
        req: _Request,
        *,
        expect_continue: bool,
    ) -> None:
        """Buffer the body for inspection, or decide it will stream (config permitting)."""
        cfg = self.config
        head = req.head
        limit = cfg.inspect_body_limit
        refuse = cfg.uninspected_body is UninspectedBody.REFUSE
        too_large = RequestRefusedError(
            413,
            ErrorCode.REQUEST_TOO_LARGE,
            f"the body is larger than the {limit}-byte inspection limit",
            close=True,
        )
        if head.content_length is not None and head.content_length > limit:
            if refuse:
                raise too_large
            req.uninspected, req.streaming = too_large, True
            if expect_continue:
                writer.write(_CONTINUE)
            return
        if expect_continue:
            # RFC 9110 §10.1.1: the client waits for this before sending content.
            writer.write(_CONTINUE)
        parts: list[bytes] = []
        size = 0
        while True:
            event = await client.next_event(cfg.idle_timeout)
            if event is None:
                raise ClientGoneError
            if isinstance(event, Body):
                size += len(event.data)
                parts.append(event.data)
                if size > limit:
                    if refuse:
                        raise too_large
                    req.uninspected, req.streaming = too_large, True
                    req.stream_prefix = b"".join(parts)
                    return
            elif isinstance(event, End):
                break
        req.body_pending = False
        req.body = b"".join(parts)
        if not req.body:
            return  # "0\r\n\r\n": chunked framing around no content at all
        try:
            req.inspected = inspect_body(head, req.body)
        except UninspectableBodyError as exc:
            unsupported = RequestRefusedError(
                415, ErrorCode.REQUEST_UNSUPPORTED_MEDIA_TYPE, str(exc)
            )
            if refuse:
                raise unsupported from None
            req.uninspected = unsupported

    async def _forward(
        self,
        conn: _Connection,
        client: ClientReader,
        writer: asyncio.StreamWriter,
        req: _Request,
        *,
        target: Target,
        decision: Decision,
        rewrite: Rewrite,
        keep: bool,
    ) -> bool:
        cfg = self.config
        head = req.head
        headers = list(rewrite.headers if rewrite.headers is not None else req.forwarded)
        headers.append(("via", via(head.headers, head.version, cfg.via)))
        payload = b""
        if req.streaming:
            if head.content_length is not None:
                headers.append(("content-length", str(head.content_length)))
            else:
                headers.append(("transfer-encoding", "chunked"))
        elif req.body is not None:
            payload = rewrite.body if rewrite.body is not None else req.body
            headers.append(("content-length", str(len(payload))))
        elif head.content_length == 0:
            headers.append(("content-length", "0"))
        origin_form = rewrite.origin_form or target.origin_form
        message = request_head(head.method, origin_form, target.authority, headers) + payload
        host, port = target.dial_host, target.port
        retry = not req.streaming and head.method in _IDEMPOTENT
        extra = decision_headers(decision)
        for attempt in (1, 2):
            upstream = conn.upstream
            reused = upstream is not None and upstream.usable_for(host, port)
            try:
                if upstream is None or not reused:
                    conn.drop_upstream()
                    upstream = conn.upstream = await connect_upstream(
                        self.connect, host, port, cfg.connect_timeout
                    )
                upstream.used += 1
                try:
                    upstream.writer.write(message)
                    if req.streaming:
                        await self._stream_body(client, upstream, req)
                    await upstream.writer.drain()
                except OSError as exc:
                    raise UpstreamError(f"sending the request failed: {exc}") from None
                result = await relay_response(
                    upstream,
                    writer,
                    method=head.method,
                    client_version=head.version,
                    client_keep_alive=lambda: keep and not self._draining and not req.body_pending,
                    pseudonym=cfg.via,
                    extra_headers=extra,
                    timeout=cfg.response_timeout,
                    buffer_size=cfg.buffer_size,
                )
            except UpstreamError as exc:
                conn.drop_upstream()
                if attempt == 1 and reused and retry:
                    continue  # a kept connection the upstream had closed: try a fresh one
                answer = RequestRefusedError(502, ErrorCode.REQUEST_UPSTREAM_FAILED, str(exc))
                if self.log is not None:
                    self.log.warning(
                        "proxy.upstream_failed",
                        door=cfg.door,
                        decision_id=decision.decision_id,
                        upstream=f"{host}:{port}",
                        error=str(exc),
                    )
                close = req.body_pending or not keep or self._draining
                await self._refuse(conn, client, writer, answer, close=close)
                return not close
            except RequestRefusedError as refusal:
                # The streamed body turned out malformed half-way: the upstream
                # got a partial request, so its connection goes too.
                conn.drop_upstream()
                await self._refuse(conn, client, writer, refusal, close=True)
                return False
            except TimeoutError:
                conn.drop_upstream()
                answer = RequestRefusedError(
                    408,
                    ErrorCode.REQUEST_MALFORMED,
                    "the request body stopped arriving",
                    close=True,
                )
                await self._refuse(conn, client, writer, answer, close=True)
                return False
            except RelayAbortedError as exc:
                conn.drop_upstream()
                if self.log is not None:
                    self.log.warning(
                        "proxy.response_aborted",
                        door=cfg.door,
                        decision_id=decision.decision_id,
                        upstream=f"{host}:{port}",
                        error=str(exc),
                    )
                return False
            if not result.reuse_upstream:
                conn.drop_upstream()
            return result.keep_client and not req.body_pending
        return False  # pragma: no cover - the loop always returns

    async def _stream_body(
        self, client: ClientReader, upstream: UpstreamConnection, req: _Request
    ) -> None:
        """Relay the rest of an uninspected body as it arrives (re-chunked when the
        client sent it chunked; byte for byte under Content-Length)."""
        chunked = req.head.content_length is None
        writer = upstream.writer
        if req.stream_prefix:
            writer.write(chunk(req.stream_prefix) if chunked else req.stream_prefix)
        while True:
            event = await client.next_event(self.config.idle_timeout)
            if event is None:
                raise ClientGoneError
            if isinstance(event, Body):
                if event.data:
                    writer.write(chunk(event.data) if chunked else event.data)
                    await writer.drain()
            elif isinstance(event, End):
                if chunked:
                    writer.write(b"0\r\n\r\n")
                req.body_pending = False
                return

    # -- CONNECT -----------------------------------------------------------------------

    async def _tunnel(
        self,
        conn: _Connection,
        client: ClientReader,
        writer: asyncio.StreamWriter,
        head: RequestHead,
    ) -> None:
        cfg = self.config
        try:
            target = parse_connect_target(head.target)
            identity = identify(
                head.get_all("proxy-authorization"), bearer_identity=cfg.bearer_identity
            )
            call = connect_call(cfg, identity, head, target)
        except RequestRefusedError as refusal:
            await self._refuse(conn, client, writer, refusal, close=True)
            return
        result = await self.pipeline.decide(call, self._context(conn, identity.token))
        decision = result.decision
        if not decision.permits:
            await self._answer_decision(conn, client, writer, decision, close=True)
            return
        if decision.outcome is Outcome.SANITIZE and decision.sanitized_params != call.params:
            answer = RequestRefusedError(
                403,
                ErrorCode.REQUEST_DESTINATION_REFUSED,
                "the policy asks to sanitize a tunnel the proxy cannot see into",
                close=True,
            )
            await self._refuse(conn, client, writer, answer, close=True)
            return
        try:
            upstream = await connect_upstream(
                self.connect, target.dial_host, target.port, cfg.connect_timeout
            )
        except UpstreamError as exc:
            if self.log is not None:
                self.log.warning(
                    "proxy.upstream_failed",
                    door=cfg.door,
                    decision_id=decision.decision_id,
                    upstream=f"{target.dial_host}:{target.port}",
                    error=str(exc),
                )
            answer = RequestRefusedError(
                502, ErrorCode.REQUEST_UPSTREAM_FAILED, str(exc), close=True
            )
            await self._refuse(conn, client, writer, answer, close=True)
            return
        # Bytes the client sent after its CONNECT head, before this answer (an
        # eager TLS ClientHello): they belong to the tunnel and go first.
        tail = b"".join(e.tail for e in client.pending if isinstance(e, Tunnel))
        client.pending.clear()
        lines = ["HTTP/1.1 200 Connection established"]
        lines.extend(f"{name}: {value}" for name, value in decision_headers(decision))
        started = time.monotonic()
        try:
            # RFC 9110 §9.3.6: no Content-Length or Transfer-Encoding in a 2xx to CONNECT.
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            if tail:
                upstream.writer.write(tail)
            await writer.drain()
            stats = await splice(
                client.reader,
                writer,
                upstream.reader,
                upstream.writer,
                idle_timeout=cfg.tunnel_idle_timeout,
                buffer_size=cfg.buffer_size,
            )
        finally:
            upstream.close()
        if self.log is not None:
            self.log.info(
                "proxy.tunnel_closed",
                door=cfg.door,
                decision_id=decision.decision_id,
                upstream=f"{target.dial_host}:{target.port}",
                bytes_up=stats.to_upstream + len(tail),
                bytes_down=stats.to_client,
                seconds=round(time.monotonic() - started, 3),
                idle_timeout=stats.idle_timeout,
                error=stats.error,
            )


def build_forward_proxy(
    pipeline: Pipeline,
    config: ProxyConfig | None = None,
    *,
    metrics: GatewayMetrics | None,
    log: JsonLog | None,
    connect: Connector | None = None,
) -> ForwardProxy:
    """The egress forward proxy over ``pipeline``; ``await proxy.start(host, port)``.

    ``metrics`` counts refusals at the door (``aegis_requests_refused_total``;
    decisions are counted by the pipeline's evidence); ``log`` receives the
    proxy's own events (refusals, upstream failures, tunnels). ``connect`` dials
    upstreams (default: :func:`asyncio.open_connection`).
    """
    return ForwardProxy(
        pipeline, config or ProxyConfig(), metrics=metrics, log=log, connect=connect
    )
