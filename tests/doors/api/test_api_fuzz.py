"""Arbitrary bytes at the decision API over a raw socket (hypothesis, ~100 examples each).

What must hold whatever arrives: the server answers with a well-formed HTTP
status or closes the connection; garbage is never answered 2xx; nothing
crashes -- after every example a normal request on a fresh connection succeeds,
and no handler or parser callback failed.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis.doors.api import create_api_server
from aegis.http.server import HttpLimits, HttpServer
from aegis.pipeline import Pipeline
from aegis.policy import CompiledPolicy
from aegis.telemetry import GatewayMetrics
from aegis.telemetry.log import JsonLog

HOST = "127.0.0.1"
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BODY = json.dumps(
    {"tenant": "acme", "agent_id": "finance-agent", "tool": "stripe.create_payment",
     "params": {"amount": 120, "currency": "USD"}}
).encode()  # fmt: skip
VALID = [
    b"POST /v1/decide HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
    b"POST /v1/decide HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY),
    b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    # Answered 200: the batch is well formed, its one item gets a call error.
    b"POST /v1/decide/batch HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
    b'Content-Length: 15\r\n\r\n{"calls": [{}]}',
]


@dataclass
class Live:
    server: HttpServer
    port: int
    log: io.StringIO


@pytest.fixture(scope="module")
def live(examples_policy: CompiledPolicy) -> Iterator[Live]:
    """The API served from its own thread and loop, so hypothesis can drive it with
    plain blocking sockets."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Live] = {}
    log = io.StringIO()
    limits = HttpLimits(
        header_timeout=1.0, body_timeout=1.0, keepalive_timeout=1.0, linger_timeout=0.2
    )

    async def main() -> None:
        server = create_api_server(
            Pipeline.with_defaults(examples_policy),
            metrics=GatewayMetrics(),
            http_limits=limits,
            log=JsonLog(log),
        )
        holder["live"] = Live(server, await server.start(HOST, 0), log)
        ready.set()
        await server.serve_forever()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    live = holder["live"]
    yield live
    asyncio.run_coroutine_threadsafe(live.server.stop(1.0), loop).result(10)
    thread.join(10)
    loop.close()


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data``, half-close, read until the server closes."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse and close before reading everything
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def statuses(raw: bytes) -> list[int]:
    """Status codes of the responses in ``raw`` (each must be well formed)."""
    found = []
    while raw:
        assert raw.startswith(b"HTTP/1.1 "), raw[:80]
        end = raw.index(b"\r\n\r\n")
        head = raw[:end].decode("latin-1").split("\r\n")
        status = int(head[0][9:12])
        assert 100 <= status <= 599
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            assert "\n" not in value and "\r" not in value
            if name.lower() == "content-length":
                length = int(value)
        if status >= 200:
            body = raw[end + 4 : end + 4 + length]
            assert len(body) == length
            if status >= 400:
                assert json.loads(body)["error"]["code"]
        raw = raw[end + 4 + (length if status >= 200 else 0) :]
        found.append(status)
    return found


def still_serving(live: Live) -> None:
    raw = exchange(live.port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert statuses(raw) == [200]
    assert live.server.stats.handler_errors == 0
    assert "http.callback_error" not in live.log.getvalue()


@FUZZ
@given(garbage=st.binary(min_size=1, max_size=2048))
def test_garbage_is_never_answered_2xx(live: Live, garbage: bytes) -> None:
    for status in statuses(exchange(live.port, garbage)):
        assert not 200 <= status < 300, garbage
    still_serving(live)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(
                st.sampled_from(
                    [b"\r\n", b"\n", b"\r", b"\x00", b" ", b":", b"Content-Length: 5\r\n",
                     b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", b"\xff", b"%"]
                )
            )  # fmt: skip
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 40))]
        else:
            del data[at:]
    return bytes(data)


@FUZZ
@given(data=mutated())
def test_mutated_requests_get_well_formed_answers(live: Live, data: bytes) -> None:
    statuses(exchange(live.port, data))  # whatever the status, it is well formed
    still_serving(live)


@FUZZ
@given(requests=st.lists(st.sampled_from(VALID), min_size=1, max_size=8))
def test_valid_pipelines_are_answered_in_full(live: Live, requests: list[bytes]) -> None:
    assert statuses(exchange(live.port, b"".join(requests))) == [200] * len(requests)
