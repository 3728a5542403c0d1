"""The benchmark's upstream: one read-only ``echo`` tool on the SDK's low-level server.

python -m benchmarks.mcp.echo_server                # stdio
python -m benchmarks.mcp.echo_server --port-file F  # HTTP on 127.0.0.1; the port goes to F
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.stdio import stdio_server

from aegis.doors.mcp.http import HttpRunner

ECHO = types.Tool(
    name="echo",
    description="Echo the arguments back.",
    input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
    annotations=types.ToolAnnotations(read_only_hint=True),
)


async def _list_tools(_ctx: object, _params: object) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[ECHO])


async def _call_tool(_ctx: object, params: types.CallToolRequestParams) -> types.CallToolResult:
    text = json.dumps(params.arguments or {}, separators=(",", ":"))
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


def build() -> Server[Any]:
    server: Server[Any] = Server(
        "bench", version="1", on_list_tools=_list_tools, on_call_tool=_call_tool
    )
    server.middleware = []  # no per-message OpenTelemetry span in the baseline either
    return server


async def _stdio() -> None:
    server = build()
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def _http(port_file: Path) -> None:
    runner = HttpRunner(build().streamable_http_app())
    port = await runner.start("127.0.0.1", 0)
    port_file.write_text(f"{port}\n")
    try:
        await anyio.sleep_forever()
    finally:
        await runner.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", type=Path)
    args = parser.parse_args()
    if args.port_file is None:
        anyio.run(_stdio)
    else:
        anyio.run(_http, args.port_file)


if __name__ == "__main__":
    main()
