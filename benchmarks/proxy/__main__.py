"""Benchmark the egress forward proxy against direct calls; print one JSON document.

    python -m benchmarks.proxy                  # 5,000 requests per measurement
    python -m benchmarks.proxy --quick          # 500: a smoke run, rough figures
    python -m benchmarks.proxy --requests 20000

Three processes on 127.0.0.1, as in a deployment: a local origin (plus a TCP
echo target), the proxy, and this one, the client. The client uses blocking
sockets, one request at a time, so each figure is one round trip:

* ``http_keepalive``: absolute-form ``GET`` over one kept-alive connection,
  direct to the origin vs through the proxy (decision, forwarding, relay);
* ``connect_roundtrip``: 64-byte echo round trips inside one CONNECT tunnel vs
  on a direct connection to the echo target (the splice alone);
* ``connect_setup``: a new connection + ``CONNECT`` + ``200`` vs a bare TCP connect
  (the tunnel's decision and upstream dial; a tenth as many samples).

Direct and proxied samples are taken alternately (A, B, A, B, ...), so a burst of
other work on this noisy 2-core machine lands on both series alike.

``added`` is proxied minus direct at the same percentile; the target (DESIGN.md
§5) is an added p99 of at most 1 ms. Nothing leaves the machine: the proxy's
connector only knows the two local servers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

from benchmarks.proxy.servers import ECHO_HOST, LOCAL, ORIGIN_HOST, serve_origin, serve_proxy

TARGET_ADDED_P99_MS = 1.0
AUTH = "Basic " + base64.b64encode(b"bench/bench-agent:token").decode()
ECHO_PAYLOAD = bytes(range(64))


def _spawn(*args: str) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.proxy", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    ports: dict[str, int] = {}
    expected = 2 if args[1] == "origin" else 1
    while len(ports) < expected:
        line = proc.stdout.readline().decode()
        if not line:
            raise RuntimeError(f"{args} exited before printing its ports")
        _, role, port = line.split()
        ports[role] = int(port)
    return proc, ports


@contextmanager
def _servers() -> Iterator[dict[str, int]]:
    origin, ports = _spawn("--role", "origin")
    try:
        proxy, proxy_ports = _spawn(
            "--role",
            "proxy",
            "--origin-port",
            str(ports["origin"]),
            "--echo-port",
            str(ports["echo"]),
        )
        try:
            yield {**ports, **proxy_ports}
        finally:
            _stop(proxy)
    finally:
        _stop(origin)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((LOCAL, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_response(sock: socket.socket, buffer: bytearray) -> int:
    """Read one Content-Length-framed response; return its status."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed mid-response")
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end]).lower()
    start = head.index(b"content-length:") + 15
    length = int(head[start : head.index(b"\r\n", start)])
    while len(buffer) < end + length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed mid-body")
        buffer += data
    status = int(head[9:12])
    del buffer[: end + length]
    return status


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] / 1000, 1)

    return {
        "samples": n,
        "p50_us": at(0.50),
        "p90_us": at(0.90),
        "p99_us": at(0.99),
        "max_us": round(ordered[-1] / 1000, 1),
        "mean_us": round(sum(ordered) / n / 1000, 1),
    }


def _timed_pair(
    count: int, warmup: int, direct: Callable[[], None], proxied: Callable[[], None]
) -> tuple[list[int], list[int]]:
    """Time ``direct`` and ``proxied`` alternately, so both see the same machine
    noise (a burst of other work hits both series, not one of them)."""
    for _ in range(warmup):
        direct()
        proxied()
    a: list[int] = []
    b: list[int] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(count):
            start = clock()
            direct()
            middle = clock()
            proxied()
            end = clock()
            a.append(middle - start)
            b.append(end - middle)
    finally:
        gc.enable()
    return a, b


def _get_step(sock: socket.socket, request: bytes) -> Callable[[], None]:
    buffer = bytearray()

    def step() -> None:
        sock.sendall(request)
        if _read_response(sock, buffer) != 200:
            raise RuntimeError("unexpected status")

    return step


def _echo_step(sock: socket.socket) -> Callable[[], None]:
    def step() -> None:
        sock.sendall(ECHO_PAYLOAD)
        got = 0
        while got < len(ECHO_PAYLOAD):
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("tunnel closed")
            got += len(data)

    return step


def _open_tunnel(proxy_port: int, echo_port: int) -> socket.socket:
    sock = _connect(proxy_port)
    sock.sendall(
        f"CONNECT {ECHO_HOST}:{echo_port} HTTP/1.1\r\nHost: {ECHO_HOST}:{echo_port}\r\n"
        f"Proxy-Authorization: {AUTH}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("proxy closed the CONNECT")
        head += data
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"CONNECT refused: {head[:80]!r}")
    return sock


def _compare(direct: list[int], proxied: list[int]) -> dict[str, Any]:
    d, p = _percentiles(direct), _percentiles(proxied)
    added = {
        f"{key}": round(p[key] - d[key], 1) for key in ("p50_us", "p90_us", "p99_us", "mean_us")
    }
    return {
        "direct": d,
        "proxy": p,
        "added": added,
        "meets_target_added_p99": added["p99_us"] <= TARGET_ADDED_P99_MS * 1000,
    }


def measure(requests: int) -> dict[str, Any]:
    warmup = max(100, requests // 10)
    setups = max(100, requests // 10)
    with _servers() as ports:
        origin, echo, proxy = ports["origin"], ports["echo"], ports["proxy"]
        direct_get = f"GET / HTTP/1.1\r\nHost: {ORIGIN_HOST}\r\n\r\n".encode()
        proxied_get = (
            f"GET http://{ORIGIN_HOST}/v1/items?limit=10 HTTP/1.1\r\nHost: {ORIGIN_HOST}\r\n"
            f"Proxy-Authorization: {AUTH}\r\nAccept: application/json\r\n\r\n"
        ).encode()
        sockets = [_connect(origin), _connect(proxy), _connect(echo), _open_tunnel(proxy, echo)]
        try:
            http = _compare(
                *_timed_pair(
                    requests,
                    warmup,
                    _get_step(sockets[0], direct_get),
                    _get_step(sockets[1], proxied_get),
                )
            )
            roundtrip = _compare(
                *_timed_pair(requests, warmup, _echo_step(sockets[2]), _echo_step(sockets[3]))
            )
        finally:
            for sock in sockets:
                sock.close()

        def bare_connect() -> None:
            _connect(echo).close()

        def tunnel_setup() -> None:
            _open_tunnel(proxy, echo).close()

        setup = _compare(*_timed_pair(setups, 20, bare_connect, tunnel_setup))
    return {"http_keepalive": http, "connect_roundtrip": roundtrip, "connect_setup": setup}


def _versions() -> dict[str, str]:
    out = {}
    for name in ("httptools", "aegis-agent-gateway"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxy", description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="500 requests: a smoke run")
    parser.add_argument("--role", choices=["origin", "proxy"], help=argparse.SUPPRESS)
    parser.add_argument("--origin-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--echo-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "origin":
        asyncio.run(serve_origin())
        return 0
    if args.role == "proxy":
        asyncio.run(serve_proxy(args.origin_port, args.echo_port))
        return 0
    requests = 500 if args.quick else args.requests
    if requests < 1:
        parser.error("--requests must be positive")
    started = time.perf_counter()
    results = measure(requests)
    report = {
        "config": {"requests": requests, "quick": args.quick, "connections": 1},
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count() or 1,
            "versions": _versions(),
        },
        "targets": {"added_p99_ms": TARGET_ADDED_P99_MS},
        **results,
        "seconds": round(time.perf_counter() - started, 2),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
