"""Helpers for HTTP server tests: a served app on 127.0.0.1 and a raw HTTP/1.1 wire.

Every server binds 127.0.0.1 on an ephemeral port; every read has a timeout.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import pytest

from aegis.errors import ErrorCode
from aegis.http.server import HttpLimits, HttpServer
from aegis.http.types import Handler
from aegis.telemetry.log import JsonLog

HOST = "127.0.0.1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str:
        return str(self.json()["error"]["code"])


class Conn:
    """One raw client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head: bool = False, timeout: float = 3.0) -> Response | None:
        """The next response (interim 1xx included), or None at EOF."""
        return await asyncio.wait_for(self._read(head), timeout)

    async def _read(self, head: bool) -> Response | None:
        try:
            status_line = await self.reader.readuntil(b"\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return None
        _, status, reason = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        headers: list[tuple[str, str]] = []
        while True:
            line = (await self.reader.readuntil(b"\r\n")).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        code = int(status)
        length = next((int(v) for k, v in headers if k == "content-length"), 0)
        body = b"" if head or code < 200 else await self.reader.readexactly(length)
        return Response(code, reason, headers, body)

    async def closed(self, timeout: float = 3.0) -> bool:
        """True when the server closes the connection (EOF or reset) within ``timeout``;
        any bytes before the close are discarded."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError):
            await self.writer.wait_closed()


@dataclass
class Served:
    server: HttpServer
    port: int
    log: io.StringIO
    refusals: list[ErrorCode] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def connect(self) -> Conn:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        return Conn(reader, writer)

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]


ServeFactory = Callable[..., AbstractAsyncContextManager[Served]]


@pytest.fixture
def serve() -> ServeFactory:
    """``async with serve(app, limits) as served:`` -- a started server, stopped after."""

    @asynccontextmanager
    async def factory(
        app: Handler, limits: HttpLimits | None = None, *, grace: float = 2.0
    ) -> AsyncIterator[Served]:
        log = io.StringIO()
        refusals: list[ErrorCode] = []
        server = HttpServer(app, limits, log=JsonLog(log), on_refusal=refusals.append)
        port = await server.start(HOST, 0)
        try:
            yield Served(server, port, log, refusals)
        finally:
            await server.stop(grace)

    return factory
