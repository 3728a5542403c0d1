"""The ext_authz server under test, run as its own process by ``python -m benchmarks.envoy``.

    python -m benchmarks.envoy.server --mode aegis   # the Aegis door, example policies
    python -m benchmarks.envoy.server --mode bare    # an Authorization servicer answering OK

Binds 127.0.0.1 on an ephemeral port, freezes the start-up heap out of the
garbage collector's view (``gc.freeze()``), prints ``PORT <n>`` on stdout and
serves until stdin closes (the parent exits or closes it) or SIGTERM arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2, status_pb2

from aegis.doors.envoy import MappingConfig, build_authz_grpc_server
from aegis.pipeline import Pipeline
from aegis.policy import compile_sources
from aegis.policy.source import read_source
from aegis.telemetry import GatewayMetrics, JsonLog, TelemetryEvidence

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("finance-payments", "slack-posting", "egress")
MAPPING = {
    "routes": [
        {"methods": ["POST"], "hosts": ["api.stripe.com"], "path": "/v1/payments",
         "tool": "stripe.create_payment"},
        {"methods": ["GET"], "hosts": ["api.stripe.com"], "path": "/v1/balance",
         "tool": "stripe.get_balance"},
        {"methods": ["POST"], "hosts": ["slack.com"], "path": "/api/chat.postMessage",
         "tool": "slack.post_message"},
        {"methods": ["GET", "HEAD"], "tool": "http.get"},
        {"tool": "http.request"},
    ]
}  # fmt: skip


class BareAuthorization:
    """The baseline: the same grpc.aio server shape, answering OK without deciding."""

    _OK = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK))

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802, ARG002
        return self._OK


async def _start(mode: str, log_path: str) -> tuple[Any, int]:
    if mode == "bare":
        server = grpc.aio.server()
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(BareAuthorization(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port
    policy = compile_sources(
        [read_source(ROOT / "examples" / n / "policy.yaml", f"{n}/policy.yaml") for n in EXAMPLES]
    )
    metrics = GatewayMetrics()
    # A real deployment logs every decision; the line is written, to nowhere.
    log = JsonLog(open(log_path, "w", encoding="utf-8"))  # noqa: SIM115 - lives as long as the process
    pipeline = Pipeline.with_defaults(policy)
    pipeline.evidence = TelemetryEvidence(metrics=metrics, log=log, policy=pipeline.policy)
    door = build_authz_grpc_server(pipeline, MappingConfig.from_dict(MAPPING), metrics=metrics)
    port = await door.start("127.0.0.1", 0)
    return door, port


async def _main(mode: str, log_path: str) -> None:
    server, port = await _start(mode, log_path)
    # The compiled policy, protobuf descriptors and grpc internals are long-lived:
    # moved out of the collector's view, a full collection stops costing ~15 ms
    # here (the p99.9 of an unfrozen run). A deployment's server should do the same
    # once it has loaded its policy.
    gc.collect()
    gc.freeze()
    print(f"PORT {port}", flush=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    eof = asyncio.ensure_future(reader.read())
    stop = asyncio.ensure_future(done.wait())
    await asyncio.wait({eof, stop}, return_when=asyncio.FIRST_COMPLETED)
    await server.stop(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["aegis", "bare"], required=True)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU if possible")
    parser.add_argument("--log", default=os.devnull, help="where the decision log goes")
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.cpu})
    asyncio.run(_main(args.mode, args.log))


if __name__ == "__main__":
    main()
