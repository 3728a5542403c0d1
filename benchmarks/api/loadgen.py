"""A closed-loop HTTP/1.1 load generator on raw asyncio (keep-alive on, pipelining off).

Each connection sends one request, waits for the whole response, records the
latency, and sends the next: N connections keep at most N requests in flight.
It is an :class:`asyncio.BufferedProtocol`, not streams, because on a 2-core machine
the generator competes with the server for CPU and every microsecond it spends
per request is one the server does not get; a stream reader costs several
times more per response than this parser of one header.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    connections: int
    duration_s: float
    completed: int = 0
    errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ns: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        lat = sorted(self.latencies_ns)

        def pct(p: float) -> float:
            if not lat:
                return 0.0
            # Nearest-rank percentile.
            index = max(0, min(len(lat) - 1, math.ceil(p / 100 * len(lat)) - 1))
            return round(lat[index] / 1e6, 3)

        return {
            "connections": self.connections,
            "duration_s": round(self.duration_s, 3),
            "requests": self.completed,
            "requests_per_s": round(self.completed / self.duration_s) if self.duration_s else 0,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "latency_ms": {
                "p50": pct(50),
                "p90": pct(90),
                "p99": pct(99),
                "p999": pct(99.9),
                "max": round(lat[-1] / 1e6, 3) if lat else 0.0,
            },
        }


_READ_BUFFER = memoryview(bytearray(256 * 1024))  # shared: one loop thread


class _Client(asyncio.BufferedProtocol):
    def __init__(
        self, requests: list[bytes], offset: int, result: LoadResult, state: _State
    ) -> None:
        self.requests = requests
        self.index = offset
        self.result = result
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent_ns = 0
        self.need = -1  # total bytes of the current response once its head is read
        self.status = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        if self.state.stop:
            self.transport.close()
            return
        request = self.requests[self.index % len(self.requests)]
        self.index += 1
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(request)

    def get_buffer(self, sizehint: int) -> memoryview:  # noqa: ARG002
        # recv_into one buffer instead of a 256 KiB bytes object per recv.
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        buf = self.buffer
        buf += _READ_BUFFER[:nbytes]
        while True:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                self.status = int(head[9:12])
                length = 0
                at = head.find(b"content-length:")
                if at >= 0:
                    stop = head.find(b"\r\n", at)
                    length = int(head[at + 15 : stop if stop > 0 else None])
                self.need = end + 4 + length
            if len(buf) < self.need:
                return
            del buf[: self.need]
            self.need = -1
            now = time.perf_counter_ns()
            if self.state.measuring:
                self.result.completed += 1
                self.result.statuses[self.status] += 1
                self.result.latencies_ns.append(now - self.sent_ns)
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        if not self.state.stop:
            self.result.errors += 1
        if not self.done.done():
            self.done.set_result(None)


def _factory(client: _Client) -> Callable[[], _Client]:
    return lambda: client


@dataclass
class _State:
    measuring: bool = False
    stop: bool = False


async def run_load(
    host: str,
    port: int,
    requests: list[bytes],
    *,
    connections: int,
    duration: float,
    warmup: float = 1.0,
) -> LoadResult:
    """Drive ``host:port`` with ``connections`` closed loops; measure ``duration`` s
    after ``warmup`` s. Bounded: every connection stops at the deadline."""
    loop = asyncio.get_running_loop()
    state = _State()
    result = LoadResult(connections, duration)
    clients: list[_Client] = []
    for i in range(connections):
        client = _Client(requests, i, result, state)
        await loop.create_connection(_factory(client), host, port)
        clients.append(client)
    await asyncio.sleep(warmup)
    state.measuring = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    state.measuring = False
    result.duration_s = time.perf_counter() - started
    state.stop = True
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    await asyncio.wait([c.done for c in clients], timeout=5)
    return result
