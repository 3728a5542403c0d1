"""The server under test, run in its own process by ``python -m benchmarks.api``.

``python -m benchmarks.api.serve --mode decide|bare [--cpu N] [--evidence ...]``
binds 127.0.0.1 on an ephemeral port, prints one JSON line ``{"port": ...}``
and serves until SIGTERM/SIGINT (then stops gracefully).

* ``decide``: the decision API (``aegis.doors.api.create_api_server``) over the
  example policies and ``Pipeline.with_defaults`` -- identity, kill switch,
  chain, limits (their working defaults), policy, approvals, evidence.
* ``bare``: the same HttpServer and Router with one handler answering a
  constant 200 JSON: the floor of the HTTP stack on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
from pathlib import Path

from aegis.doors.api import create_api_server
from aegis.http.router import Route, Router
from aegis.http.server import HttpLimits, HttpServer
from aegis.http.types import HttpRequest, HttpResponse
from aegis.pipeline import Pipeline, PolicyStore
from aegis.pipeline.stages import EvidenceSink
from aegis.policy import load_policy
from aegis.telemetry import GatewayMetrics, JsonLog, TelemetryEvidence

ROOT = Path(__file__).resolve().parents[2]
CONSTANT = HttpResponse(
    200, (("content-type", "application/json"),), b'{"outcome":"allow","code":"constant"}'
)
#: Generous limits: the benchmark measures the stack, not its refusals.
LIMITS = HttpLimits(max_connections=4096, keepalive_timeout=60.0)


async def bare(request: HttpRequest) -> HttpResponse:  # noqa: ARG001 - a Handler
    return CONSTANT


def build(mode: str, evidence: str) -> HttpServer:
    if mode == "bare":
        return HttpServer(Router([Route("/v1/decide", bare, frozenset({"POST"}))]), LIMITS)
    store = PolicyStore(load_policy([ROOT / "examples"]))
    metrics = GatewayMetrics()
    sink: EvidenceSink | None = None
    if evidence == "metrics":
        sink = TelemetryEvidence(metrics=metrics, policy=store)
    elif evidence == "metrics+log":
        log = JsonLog(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
        sink = TelemetryEvidence(metrics=metrics, log=log, policy=store)
    pipeline = Pipeline.with_defaults(store, evidence=sink)
    return create_api_server(pipeline, metrics=metrics, http_limits=LIMITS)


async def main(args: argparse.Namespace) -> None:
    server = build(args.mode, args.evidence)
    port = await server.start("127.0.0.1", 0)
    # Long-lived objects (the compiled policy, modules) leave the collector's
    # view: a full collection then walks only what requests allocate.
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"port": port, "pid": os.getpid(), "mode": args.mode}), flush=True)
    await stop.wait()
    await server.stop(2.0)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api.serve")
    parser.add_argument("--mode", choices=["decide", "bare"], required=True)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--evidence", choices=["none", "metrics", "metrics+log"], default="metrics")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    if arguments.cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {arguments.cpu})
    asyncio.run(main(arguments))
