"""``python -m aegis.doors.mcp``: run the MCP proxy from a config and a policy.

    python -m aegis.doors.mcp --config proxy.yaml --policy policies/ --stdio
    python -m aegis.doors.mcp --config proxy.yaml --policy policies/ --http 127.0.0.1:8765

In stdio mode the agent's host launches this command; stdout is the MCP wire
and everything else (JSON log lines) goes to stderr. In HTTP mode the bound
address is announced as one ``mcp.listening`` log line (and written to
``--port-file``), and the process serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from aegis.doors.mcp import build_mcp_proxy
from aegis.doors.mcp.config import McpConfigError
from aegis.doors.mcp.loader import load_config
from aegis.errors import Diagnostic, PolicyLoadError
from aegis.pipeline import Pipeline, PolicyStore
from aegis.policy import load_policy
from aegis.policy.source import read_source
from aegis.telemetry import GatewayMetrics, JsonLog, TelemetryEvidence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aegis.doors.mcp", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--config", required=True, type=Path, help="proxy configuration (YAML or JSON)"
    )
    parser.add_argument(
        "--policy",
        required=True,
        type=Path,
        action="append",
        help="policy file or folder (repeatable)",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--stdio", action="store_true", help="serve one agent over stdin/stdout")
    mode.add_argument(
        "--http", metavar="HOST:PORT", help="serve Streamable HTTP (port 0: any free port)"
    )
    parser.add_argument("--port-file", type=Path, help="write the bound HTTP port to this file")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--pipeline-timeout",
        type=float,
        default=0.25,
        help="seconds before a decision fails (fail mode)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = JsonLog(sys.stderr, level=args.log_level)
    try:
        parsed = read_source(args.config)  # the same safe reader as policies
        if isinstance(parsed, Diagnostic):
            raise McpConfigError([str(parsed)])
        # An entry point: the one place this process reads its environment.
        config = load_config(parsed.data, env=dict(os.environ), base_dir=args.config.parent)
        policy = PolicyStore(load_policy(args.policy))
    except (OSError, McpConfigError, PolicyLoadError) as exc:
        log.error("mcp.config_invalid", error=str(exc))
        return 2
    metrics = GatewayMetrics()
    evidence = TelemetryEvidence(metrics=metrics, log=log, policy=policy)
    pipeline = Pipeline.with_defaults(policy, evidence=evidence, timeout=args.pipeline_timeout)
    proxy = build_mcp_proxy(pipeline, config, metrics=metrics, log=log)
    if args.stdio:
        anyio.run(proxy.serve_stdio)
        return 0
    host, _, port = str(args.http).rpartition(":")
    if not host or not port.isdigit():
        log.error("mcp.config_invalid", error=f"--http expects HOST:PORT, got {args.http!r}")
        return 2

    async def serve() -> None:
        bound = await proxy.start(host.strip("[]"), int(port))
        log.info("mcp.listening", host=host, port=bound, path=config.http.path)
        if args.port_file is not None:
            args.port_file.write_text(f"{bound}\n", encoding="utf-8")
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        await proxy.stop()

    anyio.run(serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
