"""A reference upstream MCP server for the MCP door's tests, on the SDK's low-level server.

Tools with read-only and destructive annotations, one whose description a
test can change (the rug pull), tools that call back into the client
(sampling, elicitation, logging, progress) and one that records nothing but
its arguments. Every call is recorded in ``calls``, so a test can assert that
a refused call never reached the upstream.

Run it as a script to serve over stdio (``python mcp_reference_server.py``)
for the subprocess tests. ``--calls-file PATH`` appends one JSON line per call.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPDeprecationWarning

OBJECT = {"type": "object"}


def _schema(**props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props)}


def _tools() -> dict[str, types.Tool]:
    ro = types.ToolAnnotations(read_only_hint=True)
    destructive = types.ToolAnnotations(read_only_hint=False, destructive_hint=True)
    write = types.ToolAnnotations(
        read_only_hint=False, destructive_hint=False, open_world_hint=True
    )
    tools = [
        types.Tool(
            name="read_file",
            description="Read a file.",
            input_schema=_schema(path={"type": "string"}),
            annotations=ro,
        ),
        types.Tool(
            name="delete_file",
            description="Delete a file.",
            input_schema=_schema(path={"type": "string"}),
            annotations=destructive,
        ),
        types.Tool(
            name="send_email",
            description="Send an email.",
            input_schema=_schema(to={"type": "string"}, body={"type": "string"}),
            annotations=write,
        ),
        types.Tool(
            name="transfer",
            description="Transfer money.",
            input_schema=_schema(amount={"type": "number"}, to={"type": "string"}),
            annotations=write,
        ),
        types.Tool(
            name="weather",
            description="Current weather for a city.",
            input_schema=_schema(city={"type": "string"}),
            annotations=ro,
        ),
        types.Tool(name="echo", description="Echo the arguments.", input_schema=OBJECT),
        types.Tool(
            name="admin_reset",
            description="Reset everything.",
            input_schema=OBJECT,
            annotations=destructive,
        ),
        types.Tool(
            name="ask_llm",
            description="Ask the client's model.",
            input_schema=_schema(prompt={"type": "string"}),
        ),
        types.Tool(
            name="confirm",
            description="Ask the user.",
            input_schema=_schema(message={"type": "string"}),
        ),
        types.Tool(
            name="with_progress",
            description="Report progress.",
            input_schema=OBJECT,
            annotations=ro,
        ),
        types.Tool(
            name="with_logging",
            description="Send log messages.",
            input_schema=OBJECT,
            annotations=ro,
        ),
        types.Tool(
            name="failing",
            description="Fails as a tool (isError).",
            input_schema=OBJECT,
            annotations=ro,
        ),
        types.Tool(name="crash", description="Raises: a JSON-RPC error.", input_schema=OBJECT),
        types.Tool(name="exit", description="Ends the server process.", input_schema=OBJECT),
    ]
    return {tool.name: tool for tool in tools}


class ReferenceUpstream:
    def __init__(self, name: str = "reference", calls_file: Path | None = None) -> None:
        self.tools = _tools()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.calls_file = calls_file
        self.sessions: list[ServerSession] = []
        self.server: Server[Any] = Server(
            name,
            version="1.0.0",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_read_resource=self._read_resource,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
        )

    # -- test controls --------------------------------------------------------------

    def set_description(self, tool: str, description: str) -> None:
        self.tools[tool] = self.tools[tool].model_copy(update={"description": description})

    def add_tool(self, tool: types.Tool) -> None:
        self.tools[tool.name] = tool

    async def announce_tools_changed(self) -> None:
        for session in self.sessions:
            await session.send_tool_list_changed()

    def called(self, tool: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name == tool]

    # -- handlers -------------------------------------------------------------------

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], _params: object
    ) -> types.ListToolsResult:
        if ctx.session not in self.sessions:
            self.sessions.append(ctx.session)
        return types.ListToolsResult(tools=list(self.tools.values()))

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name, args = params.name, dict(params.arguments or {})
        if name not in self.tools:
            raise ValueError(f"Unknown tool: {name}")
        self.calls.append((name, args))
        if self.calls_file is not None:
            with self.calls_file.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"tool": name, "arguments": args}) + "\n")
        with warnings.catch_warnings():  # sampling and logging are deprecated in 2026-07-28
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            return await self._run(ctx, name, args)

    async def _run(
        self, ctx: ServerRequestContext[Any], name: str, args: dict[str, Any]
    ) -> types.CallToolResult:
        if name == "ask_llm":
            reply = await ctx.session.create_message(
                [
                    types.SamplingMessage(
                        role="user", content=types.TextContent(type="text", text=args["prompt"])
                    )
                ],
                max_tokens=50,
                related_request_id=ctx.request_id,
            )
            text = reply.content.text if isinstance(reply.content, types.TextContent) else "?"
            return _text(f"model said: {text}")
        if name == "confirm":
            answer = await ctx.session.elicit(
                args["message"],
                {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
                related_request_id=ctx.request_id,
            )
            return _text(f"user: {answer.action} {json.dumps(answer.content)}")
        if name == "with_progress":
            for step in (0, 50, 100):
                await ctx.session.report_progress(step, 100)
            return _text("done")
        if name == "with_logging":
            for message in ("started", "working", "finished"):
                await ctx.session.send_log_message(
                    "info", message, "reference", related_request_id=ctx.request_id
                )
            return _text("logged")
        if name == "crash":
            raise RuntimeError("the upstream fell over")
        if name == "exit":
            os._exit(3)  # only ever called on a subprocess upstream
        if name == "failing":
            return types.CallToolResult(
                content=[types.TextContent(type="text", text="it broke")], is_error=True
            )
        return _text(json.dumps({"tool": name, "arguments": args}, sort_keys=True))

    async def _list_resources(self, _ctx: object, _params: object) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[types.Resource(uri="ref://readme", name="readme", mime_type="text/plain")]
        )

    async def _read_resource(
        self, _ctx: object, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        if str(params.uri) != "ref://readme":
            raise ValueError("no such resource")
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(uri="ref://readme", mime_type="text/plain", text="hello")
            ]
        )

    async def _list_prompts(self, _ctx: object, _params: object) -> types.ListPromptsResult:
        return types.ListPromptsResult(
            prompts=[types.Prompt(name="greet", description="Say hello.")]
        )

    async def _get_prompt(
        self, _ctx: object, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        return types.GetPromptResult(
            messages=[
                types.PromptMessage(
                    role="user",
                    content=types.TextContent(type="text", text=f"hello from {params.name}"),
                )
            ]
        )


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def _serve_stdio(upstream: ReferenceUpstream) -> None:
    async with stdio_server() as (read, write):
        options = upstream.server.create_initialization_options(
            NotificationOptions(tools_changed=True)
        )
        await upstream.server.run(read, write, options)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="reference")
    parser.add_argument("--calls-file", type=Path)
    parser.add_argument("--description", help="override the weather tool's description")
    args = parser.parse_args()
    upstream = ReferenceUpstream(args.name, args.calls_file)
    if args.description:
        upstream.set_description("weather", args.description)
    anyio.run(_serve_stdio, upstream)


if __name__ == "__main__":
    main()
