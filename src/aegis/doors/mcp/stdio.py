"""The proxy served over stdio: one agent, newline-delimited JSON-RPC.

The agent's host launches the proxy and writes to its stdin / reads its stdout
(spec 2025-11-25, basic/transports "stdio"; the server MUST NOT write anything
to stdout that is not a valid MCP message). While serving, file descriptor 1
points at stderr and 0 at the null device, so a stray ``print`` -- ours, a
library's, an upstream child's -- cannot corrupt the wire; the wire itself
uses private duplicates of the original descriptors.

Lines are read with a length limit (:mod:`.lines`) and decoded by
:mod:`.framing`; what it refuses is answered directly, what it accepts goes to
the SDK server loop.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

import anyio
from mcp.shared.message import SessionMessage

from aegis.doors.mcp.framing import Refused, decode_line, encode, oversize_error
from aegis.doors.mcp.lines import TOO_LONG, LineReader, LineWriter, open_lines

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

    from aegis.doors.mcp.proxy import McpProxy


async def serve_stdio(
    proxy: McpProxy, *, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None
) -> None:
    if stdin is None and stdout is None:
        with _claimed_stdio() as (wire_in, wire_out):
            await serve_lines(proxy, wire_in, wire_out)
    else:
        await serve_lines(proxy, stdin or sys.stdin.buffer, stdout or sys.stdout.buffer)


async def serve_lines(proxy: McpProxy, source: IO[bytes], sink: IO[bytes]) -> None:
    """Serve until ``source`` reaches EOF. Pipes are driven by the event loop;
    any other binary file object (a file, BytesIO) through worker threads."""
    server = proxy.server
    limit = proxy.config.max_line_bytes
    to_server_send, to_server = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    outgoing_send, outgoing = anyio.create_memory_object_stream[SessionMessage](64)
    server_out = outgoing_send.clone()

    async def reader(lines: LineReader, errors: MemoryObjectSendStream[SessionMessage]) -> None:
        async with to_server_send, errors:
            while True:
                line = await lines.readline()
                if line is None:
                    return
                decoded = oversize_error(limit) if line is TOO_LONG else decode_line(line)
                if decoded is None:
                    continue
                if isinstance(decoded, Refused):
                    await errors.send(SessionMessage(decoded.response))
                else:
                    await to_server_send.send(SessionMessage(decoded))

    async def writer(lines: LineWriter) -> None:
        async with outgoing:
            async for message in outgoing:
                await lines.write(encode(message.message))

    async with (
        open_lines(source, sink, limit) as (line_reader, line_writer),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(reader, line_reader, outgoing_send)
        tg.start_soon(writer, line_writer)
        await server.run(to_server, server_out, server.create_initialization_options())


@contextmanager
def _claimed_stdio() -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """The process's stdin/stdout as the wire, with fd 0 -> /dev/null and
    fd 1 -> stderr until the proxy stops."""
    sys.stdout.flush()
    wire_in_fd, wire_out_fd = os.dup(0), os.dup(1)
    saved_in, saved_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
        os.dup2(2, 1)
    finally:
        os.close(devnull)
    wire_in = os.fdopen(wire_in_fd, "rb")
    wire_out = os.fdopen(wire_out_fd, "wb")
    try:
        yield wire_in, wire_out
    finally:
        sys.stdout.flush()
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)
        for wire in (wire_out, wire_in):
            with contextlib.suppress(OSError):
                wire.close()


__all__ = ["serve_lines", "serve_stdio"]
