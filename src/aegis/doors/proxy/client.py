"""The client side of a connection: bytes off the socket, through the request parser.

Reading is pulled by the server, one event at a time, so a client can never get
more than one read (``buffer_size``) ahead of what the proxy has handled -- the
backpressure that bounds memory per connection -- and every read is bounded in
time: ``head_timeout`` for a request head once its first byte arrived (slowloris),
the idle timeout otherwise.
"""

from __future__ import annotations

import asyncio
from collections import deque

from aegis.doors.proxy.config import ProxyConfig
from aegis.doors.proxy.parsing import (
    Body,
    End,
    Event,
    Failed,
    Head,
    RequestHead,
    RequestParser,
    Tunnel,
)
from aegis.doors.proxy.responses import RequestRefusedError
from aegis.errors import ErrorCode


class ClientGoneError(Exception):
    """The client closed its connection in the middle of a request."""


class ClientReader:
    """The client's bytes through the request parser, one event at a time.

    Reads only when the caller wants the next event, so a client can never get
    more than one read (``buffer_size``) ahead of what the proxy has handled.
    """

    def __init__(self, reader: asyncio.StreamReader, config: ProxyConfig) -> None:
        self.reader = reader
        self.buffer_size = config.buffer_size
        self.parser = RequestParser(
            max_head_bytes=config.max_head_bytes,
            max_headers=config.max_headers,
            max_target_length=config.max_target_length,
        )
        self.pending: deque[Event] = deque()
        self.eof = False

    async def _fill(self, timeout: float) -> bool:
        """Read and parse once; False at EOF (or after the parser stopped at an upgrade)."""
        if self.eof or self.parser.upgraded:
            return False
        async with asyncio.timeout(timeout):
            data = await self.reader.read(self.buffer_size)
        if not data:
            self.eof = True
            return False
        self.pending.extend(self.parser.feed(data))
        return True

    async def next_event(self, timeout: float) -> Head | Body | End | Tunnel | None:
        """The next event; None at EOF. TimeoutError when nothing came for
        ``timeout``; RequestRefusedError where the input went wrong."""
        while not self.pending:
            if not await self._fill(timeout):
                return None
        event = self.pending.popleft()
        if isinstance(event, Failed):
            raise event.refusal
        return event

    async def read_head(
        self, *, idle_timeout: float, head_timeout: float, deadline: float | None
    ) -> RequestHead | None:
        """The next request head; None when the client closed or stayed idle.

        ``idle_timeout`` bounds the wait for the first byte (keep-alive);
        ``head_timeout`` the time from that byte to the end of the head. With
        ``deadline`` (a new connection), the whole head must arrive by then.
        """
        loop = asyncio.get_running_loop()
        while True:
            if self.pending:
                event = self.pending.popleft()
                if isinstance(event, Failed):
                    raise event.refusal
                if isinstance(event, Head):
                    return event.head
                continue  # pragma: no cover - events before a head cannot happen
            if deadline is None and self.parser.in_message:
                deadline = loop.time() + head_timeout
            timeout = idle_timeout if deadline is None else deadline - loop.time()
            try:
                if timeout <= 0:
                    raise TimeoutError
                if not await self._fill(timeout):
                    return None
            except TimeoutError:
                if self.parser.in_message:
                    raise RequestRefusedError(
                        408,
                        ErrorCode.REQUEST_MALFORMED,
                        f"the request head did not arrive within {head_timeout}s",
                        close=True,
                    ) from None
                return None
