"""The reference MCP server the conformance suite's server scenarios expect,
written with the official Python SDK's low-level server.

It implements what @modelcontextprotocol/conformance 0.1.16 asks of a server
(the tool, resource and prompt names and shapes in each scenario's
description), and is served over stdio as the *upstream* of the Aegis MCP
proxy: the suite talks to the proxy, the proxy to this server. Run alone:

    python everything_server.py            # stdio
"""

from __future__ import annotations

import base64
import json
import sys
import warnings
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

# A 1x1 red PNG and a tiny silent WAV (44-byte header + 2 samples).
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAF"
    "BQIAX8jx0gAAAABJRU5ErkJggg=="
)
WAV = base64.b64encode(
    b"RIFF"
    + (40).to_bytes(4, "little")
    + b"WAVEfmt "
    + (16).to_bytes(4, "little")
    + (1).to_bytes(2, "little")
    + (1).to_bytes(2, "little")
    + (8000).to_bytes(4, "little")
    + (16000).to_bytes(4, "little")
    + (2).to_bytes(2, "little")
    + (16).to_bytes(2, "little")
    + b"data"
    + (4).to_bytes(4, "little")
    + b"\x00\x00\x00\x00"
).decode()

EMPTY: dict[str, Any] = {"type": "object", "properties": {}}


def _tool(name: str, description: str, schema: dict[str, Any] | None = None) -> types.Tool:
    return types.Tool(name=name, description=description, input_schema=schema or EMPTY)


TOOLS = [
    _tool("test_simple_text", "Returns simple text content."),
    _tool("test_image_content", "Returns image content."),
    _tool("test_audio_content", "Returns audio content."),
    _tool("test_embedded_resource", "Returns an embedded resource."),
    _tool("test_multiple_content_types", "Returns text, image and resource content."),
    _tool("test_tool_with_logging", "Sends three log messages while it runs."),
    _tool("test_tool_with_progress", "Reports progress 0, 50, 100."),
    _tool("test_error_handling", "Always fails (isError)."),
    _tool("test_reconnection", "A tool for the SSE polling scenario; answers immediately."),
    _tool(
        "test_sampling",
        "Asks the client's model.",
        {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
    ),
    _tool(
        "test_elicitation",
        "Asks the user.",
        {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
    ),
    _tool("test_elicitation_sep1034_defaults", "Elicitation with default values (SEP-1034)."),
    _tool("test_elicitation_sep1330_enums", "Elicitation with every enum form (SEP-1330)."),
    _tool(
        "json_schema_2020_12_tool",
        "Tool with JSON Schema 2020-12 features",
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                }
            },
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": False,
        },
    ),
]


def _completed(answer: types.ElicitResult) -> types.CallToolResult:
    text = f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content)}"
    return types.CallToolResult(content=[_text(text)])


def _text(text: str) -> types.TextContent:
    return types.TextContent(type="text", text=text)


async def list_tools(_ctx: ServerRequestContext[Any], _params: object) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(
    ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    with (
        warnings.catch_warnings()
    ):  # sampling/logging are deprecated in 2026-07-28, still tested here
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        return await _call(ctx, params.name, dict(params.arguments or {}))


async def _call(
    ctx: ServerRequestContext[Any], name: str, args: dict[str, Any]
) -> types.CallToolResult:
    session, rid = ctx.session, ctx.request_id
    if name == "test_simple_text":
        return types.CallToolResult(content=[_text("This is a simple text response for testing.")])
    if name == "test_image_content":
        return types.CallToolResult(
            content=[types.ImageContent(type="image", data=PNG, mime_type="image/png")]
        )
    if name == "test_audio_content":
        return types.CallToolResult(
            content=[types.AudioContent(type="audio", data=WAV, mime_type="audio/wav")]
        )
    if name == "test_embedded_resource":
        resource = types.TextResourceContents(
            uri="test://embedded-resource",
            mime_type="text/plain",
            text="This is an embedded resource content.",
        )
        return types.CallToolResult(
            content=[types.EmbeddedResource(type="resource", resource=resource)]
        )
    if name == "test_multiple_content_types":
        resource = types.TextResourceContents(
            uri="test://mixed-content-resource",
            mime_type="application/json",
            text=json.dumps({"test": "data", "value": 123}),
        )
        return types.CallToolResult(
            content=[
                _text("Multiple content types test:"),
                types.ImageContent(type="image", data=PNG, mime_type="image/png"),
                types.EmbeddedResource(type="resource", resource=resource),
            ]
        )
    if name == "test_tool_with_logging":
        for i, message in enumerate(
            ("Tool execution started", "Tool processing data", "Tool execution completed")
        ):
            if i:
                await anyio.sleep(0.05)
            await session.send_log_message("info", message, "everything", related_request_id=rid)
        return types.CallToolResult(content=[_text("Tool with logging executed successfully")])
    if name == "test_tool_with_progress":
        for i, step in enumerate((0, 50, 100)):
            if i:
                await anyio.sleep(0.05)
            await session.report_progress(step, 100)
        return types.CallToolResult(content=[_text("Tool with progress executed successfully")])
    if name == "test_error_handling":
        return types.CallToolResult(
            content=[_text("This tool intentionally returns an error for testing")], is_error=True
        )
    if name == "test_reconnection":
        return types.CallToolResult(content=[_text("Reconnection test completed successfully")])
    if name == "test_sampling":
        reply = await session.create_message(
            [types.SamplingMessage(role="user", content=_text(str(args.get("prompt", ""))))],
            max_tokens=100,
            related_request_id=rid,
        )
        text = (
            reply.content.text
            if isinstance(reply.content, types.TextContent)
            else str(reply.content)
        )
        return types.CallToolResult(content=[_text(f"LLM response: {text}")])
    if name == "test_elicitation":
        schema = {
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "required": ["username", "email"],
        }
        answer = await session.elicit(str(args.get("message", "")), schema, related_request_id=rid)
        return types.CallToolResult(
            content=[
                _text(
                    f"User response: action={answer.action}, content={json.dumps(answer.content)}"
                )
            ]
        )
    if name == "test_elicitation_sep1034_defaults":
        schema = {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active",
                },
                "verified": {
                    "type": "boolean",
                    "description": "Verification status",
                    "default": True,
                },
            },
            "required": [],
        }
        answer = await session.elicit(
            "Please review and update the form fields with defaults", schema, rid
        )
        return _completed(answer)
    if name == "test_elicitation_sep1330_enums":
        schema = {
            "type": "object",
            "properties": {
                "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                "titledSingle": {
                    "type": "string",
                    "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"},
                    ],
                },
                "legacyEnum": {
                    "type": "string",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                },
                "titledMulti": {
                    "type": "array",
                    "items": {
                        "anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"},
                        ]
                    },
                },
            },
            "required": [],
        }
        answer = await session.elicit("Please select options", schema, rid)
        return _completed(answer)
    raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name}")


# -- resources ---------------------------------------------------------------------------

RESOURCES = [
    types.Resource(
        uri="test://static-text",
        name="static-text",
        description="A static text resource",
        mime_type="text/plain",
    ),
    types.Resource(
        uri="test://static-binary",
        name="static-binary",
        description="A static binary resource",
        mime_type="image/png",
    ),
    types.Resource(
        uri="test://watched-resource",
        name="watched-resource",
        description="A resource to subscribe to",
        mime_type="text/plain",
    ),
]
TEMPLATE = types.ResourceTemplate(
    uri_template="test://template/{id}/data",
    name="template",
    description="A resource template",
    mime_type="application/json",
)


async def list_resources(_ctx: object, _params: object) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=RESOURCES)


async def list_templates(_ctx: object, _params: object) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(resource_templates=[TEMPLATE])


async def read_resource(
    _ctx: object, params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    uri = str(params.uri)
    if uri == "test://static-text":
        contents: list[Any] = [
            types.TextResourceContents(
                uri=uri,
                mime_type="text/plain",
                text="This is the content of the static text resource.",
            )
        ]
    elif uri == "test://static-binary":
        contents = [types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG)]
    elif uri == "test://watched-resource":
        contents = [
            types.TextResourceContents(
                uri=uri, mime_type="text/plain", text="Watched resource content."
            )
        ]
    elif uri.startswith("test://template/") and uri.endswith("/data"):
        item = uri[len("test://template/") : -len("/data")]
        text = json.dumps({"id": item, "templateTest": True, "data": f"Data for ID: {item}"})
        contents = [types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
    else:
        raise MCPError(-32002, f"Resource not found: {uri}")
    return types.ReadResourceResult(contents=contents)


async def subscribe(_ctx: object, _params: types.SubscribeRequestParams) -> types.EmptyResult:
    return types.EmptyResult()


async def unsubscribe(_ctx: object, _params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    return types.EmptyResult()


# -- prompts, completion, logging ----------------------------------------------------------

PROMPTS = [
    types.Prompt(name="test_simple_prompt", description="A simple prompt without arguments"),
    types.Prompt(
        name="test_prompt_with_arguments",
        description="A prompt with arguments",
        arguments=[
            types.PromptArgument(name="arg1", description="First test argument", required=True),
            types.PromptArgument(name="arg2", description="Second test argument", required=True),
        ],
    ),
    types.Prompt(
        name="test_prompt_with_embedded_resource",
        description="A prompt with an embedded resource",
        arguments=[
            types.PromptArgument(
                name="resourceUri", description="URI of the resource", required=True
            )
        ],
    ),
    types.Prompt(name="test_prompt_with_image", description="A prompt with image content"),
]


async def list_prompts(_ctx: object, _params: object) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=PROMPTS)


async def get_prompt(_ctx: object, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    args = params.arguments or {}
    if params.name == "test_simple_prompt":
        messages = [
            types.PromptMessage(role="user", content=_text("This is a simple prompt for testing."))
        ]
    elif params.name == "test_prompt_with_arguments":
        text = (
            f"Prompt with arguments: arg1='{args.get('arg1', '')}', arg2='{args.get('arg2', '')}'"
        )
        messages = [types.PromptMessage(role="user", content=_text(text))]
    elif params.name == "test_prompt_with_embedded_resource":
        resource = types.TextResourceContents(
            uri=args.get("resourceUri", "test://example-resource"),
            mime_type="text/plain",
            text="Embedded resource content for testing.",
        )
        messages = [
            types.PromptMessage(
                role="user", content=types.EmbeddedResource(type="resource", resource=resource)
            ),
            types.PromptMessage(
                role="user", content=_text("Please process the embedded resource above.")
            ),
        ]
    elif params.name == "test_prompt_with_image":
        messages = [
            types.PromptMessage(
                role="user",
                content=types.ImageContent(type="image", data=PNG, mime_type="image/png"),
            ),
            types.PromptMessage(role="user", content=_text("Please analyze the image above.")),
        ]
    else:
        raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name}")
    return types.GetPromptResult(messages=messages)


async def complete(_ctx: object, params: types.CompleteRequestParams) -> types.CompleteResult:
    prefix = params.argument.value
    values = [v for v in ("paris", "park", "party", "test-value") if v.startswith(prefix)]
    return types.CompleteResult(
        completion=types.Completion(values=values, total=len(values), has_more=False)
    )


async def set_level(_ctx: object, _params: types.SetLevelRequestParams) -> types.EmptyResult:
    return types.EmptyResult()


def build() -> Server[Any]:
    server: Server[Any] = Server(
        "aegis-conformance-everything",
        version="1.0.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
    )
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)
    return server


async def serve() -> None:
    server = build()
    async with stdio_server() as (read, write):
        options = server.create_initialization_options(
            NotificationOptions(tools_changed=True, resources_changed=True, prompts_changed=True)
        )
        await server.run(read, write, options)


if __name__ == "__main__":
    anyio.run(serve)
    sys.exit(0)
