"""CONNECT tunnels: bytes spliced both ways once the policy allowed the destination.

After ``200 Connection established`` the proxy is a blind relay (RFC 9110
§9.3.6): TLS is not intercepted, so the policy decided on host and port alone.
The splice:

* reads at most ``buffer_size`` bytes at a time per direction and waits for the
  other side to drain before reading more, so a fast sender and a slow receiver
  hold at most a couple of buffers in the proxy, never an unbounded queue;
* passes half-closes on: when one side ends its sending (EOF), the proxy shuts
  down the write half toward the other side and keeps relaying the other
  direction until it ends too (a client may send its request, half-close, and
  wait for the answer);
* closes both sides when no byte moved either way for ``idle_timeout``, and when
  either side fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass(slots=True)
class TunnelStats:
    to_upstream: int = 0
    to_client: int = 0
    idle_timeout: bool = False
    error: str | None = None
    #: loop.time() of the last byte relayed either way.
    last_activity: float = 0.0


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    stats: TunnelStats,
    upstream: bool,
    buffer_size: int,
) -> None:
    loop = asyncio.get_running_loop()
    while True:
        data = await reader.read(buffer_size)
        if not data:
            # Half-close: the sender is done; tell the receiver, keep the other way open.
            if writer.can_write_eof() and not writer.is_closing():
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()
            return
        stats.last_activity = loop.time()
        writer.write(data)
        if upstream:
            stats.to_upstream += len(data)
        else:
            stats.to_client += len(data)
        await writer.drain()


async def splice(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
    *,
    idle_timeout: float,
    buffer_size: int,
) -> TunnelStats:
    """Relay both ways until both directions ended, one failed, or the tunnel idled.

    The caller closes both writers afterwards (and on cancellation).
    """
    loop = asyncio.get_running_loop()
    stats = TunnelStats()
    stats.last_activity = loop.time()
    up = asyncio.create_task(
        _pump(client_reader, upstream_writer, stats, True, buffer_size), name="tunnel-up"
    )
    down = asyncio.create_task(
        _pump(upstream_reader, client_writer, stats, False, buffer_size), name="tunnel-down"
    )
    pending: set[asyncio.Task[None]] = {up, down}
    try:
        while pending:
            remaining = stats.last_activity + idle_timeout - loop.time()
            if remaining <= 0:
                stats.idle_timeout = True
                break
            done, pending = await asyncio.wait(
                pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            failed = [t for t in done if not t.cancelled() and t.exception() is not None]
            if failed:
                exc = failed[0].exception()
                stats.error = f"{type(exc).__name__}: {exc}"
                break
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return stats
