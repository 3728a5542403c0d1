"""Newline-delimited I/O for the stdio transport, with a line-length limit.

Two implementations behind one shape:

* pipes and sockets under asyncio (what an MCP host gives its server) are read
  and written by the event loop itself (``connect_read_pipe`` /
  ``connect_write_pipe``): no thread hop per message on the hot path;
* anything else (a regular file, ``BytesIO``, another event loop) is read and
  written in worker threads.

A line longer than the limit is never held whole: the reader drops it
chunk by chunk up to its newline and returns :data:`TOO_LONG`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Final, Protocol

import anyio.to_thread
import sniffio

#: Returned for a line that exceeded the limit (its bytes were discarded).
TOO_LONG: Final = b"\x00too-long"


class LineReader(Protocol):
    async def readline(self) -> bytes | None:
        """The next line (with its newline, if any), TOO_LONG, or None at EOF."""
        ...


class LineWriter(Protocol):
    async def write(self, data: bytes) -> None: ...


class _ThreadReader:
    def __init__(self, source: IO[bytes], limit: int) -> None:
        self.source = source
        self.limit = limit

    async def _read(self, size: int) -> bytes:
        data: bytes = await anyio.to_thread.run_sync(
            self.source.readline, size, abandon_on_cancel=True
        )
        return data

    async def readline(self) -> bytes | None:
        line = await self._read(self.limit + 2)
        if not line:
            return None
        ended = line.endswith(b"\n")
        if len(line) - ended <= self.limit:
            return line
        while not ended:  # discard the rest of the line, one bounded chunk at a time
            more = await self._read(65536)
            ended = not more or more.endswith(b"\n")
        return TOO_LONG


class _ThreadWriter:
    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink

    async def write(self, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._write, data)

    def _write(self, data: bytes) -> None:
        self.sink.write(data)
        self.sink.flush()


class _PipeReader:
    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        self.reader = reader
        self.limit = limit

    async def readline(self) -> bytes | None:
        try:
            line = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # EOF, maybe after a last unterminated line
            if not exc.partial:
                return None
            return exc.partial if len(exc.partial) <= self.limit else TOO_LONG
        except asyncio.LimitOverrunError as exc:
            await self._discard(exc.consumed)
            return TOO_LONG
        return line if len(line) - 1 <= self.limit else TOO_LONG

    async def _discard(self, consumed: int) -> None:
        while True:
            await self.reader.readexactly(consumed)
            try:
                await self.reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                consumed = exc.consumed
            except asyncio.IncompleteReadError:
                return


class _PipeWriter:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


def _is_pipe(stream: IO[bytes]) -> bool:
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, OSError, ValueError):  # BytesIO and friends have no descriptor
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


@asynccontextmanager
async def open_lines(
    source: IO[bytes], sink: IO[bytes], limit: int
) -> AsyncIterator[tuple[LineReader, LineWriter]]:
    """A reader of ``source`` and a writer to ``sink``, the fastest that fits."""
    on_asyncio = sniffio.current_async_library() == "asyncio"
    if not (on_asyncio and _is_pipe(source) and _is_pipe(sink)):
        yield _ThreadReader(source, limit), _ThreadWriter(sink)
        return
    loop = asyncio.get_running_loop()
    stream_reader = asyncio.StreamReader(limit=limit + 1)
    read_transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stream_reader), source
    )
    write_transport, write_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sink
    )
    writer = asyncio.StreamWriter(write_transport, write_protocol, None, loop)
    try:
        yield _PipeReader(stream_reader, limit), _PipeWriter(writer)
    finally:
        read_transport.close()
        write_transport.close()
        # The loop made the descriptors non-blocking; give them back as found.
        for stream in (source, sink):
            with contextlib.suppress(OSError, ValueError):
                os.set_blocking(stream.fileno(), True)


__all__ = ["TOO_LONG", "LineReader", "LineWriter", "open_lines"]
