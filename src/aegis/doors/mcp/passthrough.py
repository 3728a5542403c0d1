"""MCP features the proxy relays without a policy decision, when configured.

The policy language decides tool calls; resources, prompts, completions and
the (deprecated) logging level are relayed only where ``passthrough`` turns
them on, because each is a path from the agent to an upstream that no rule
mediates. Routing:

* ``resources/list`` and ``resources/templates/list`` (spec 2025-11-25,
  server/resources) merge every upstream's pages; URIs are not renamed (they
  are the upstream's own identifiers), and each listed URI remembers its
  upstream so ``resources/read``, ``subscribe`` and ``unsubscribe`` go there.
  A URI no listing named (a template instance) is tried on each upstream with
  resources, in configuration order.
* ``prompts/list`` and ``prompts/get`` (server/prompts) namespace prompt names
  with the upstream's tool prefix.
* ``completion/complete`` (server/utilities/completion) follows its reference:
  a prompt name by prefix, a resource template by the upstream that listed it.
* ``logging/setLevel`` (server/utilities/logging) is sent to every upstream
  that has the logging capability.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import mcp_types as types
from mcp.server import Server
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from aegis.doors.mcp.config import UpstreamConfig
from aegis.doors.mcp.sessions import LinkSet
from aegis.doors.mcp.upstream import UpstreamLink, UpstreamUnavailableError
from aegis.doors.mcp.wire import upstream_error

if TYPE_CHECKING:
    from aegis.doors.mcp.proxy import Ctx, McpProxy
    from aegis.doors.mcp.sessions import ProxyRuntime

_R = TypeVar("_R", bound=BaseModel)


def register(proxy: McpProxy, server: Server[ProxyRuntime]) -> None:
    """Add the configured passthrough handlers to ``server``."""
    handlers = _Handlers(proxy)
    options = proxy.config.passthrough
    if options.resources:
        server.add_request_handler(
            "resources/list", types.PaginatedRequestParams, handlers.list_resources
        )
        server.add_request_handler(
            "resources/templates/list", types.PaginatedRequestParams, handlers.list_templates
        )
        server.add_request_handler(
            "resources/read", types.ReadResourceRequestParams, handlers.read_resource
        )
        server.add_request_handler(
            "resources/subscribe", types.SubscribeRequestParams, handlers.subscribe
        )
        server.add_request_handler(
            "resources/unsubscribe", types.UnsubscribeRequestParams, handlers.unsubscribe
        )
    if options.prompts:
        server.add_request_handler(
            "prompts/list", types.PaginatedRequestParams, handlers.list_prompts
        )
        server.add_request_handler("prompts/get", types.GetPromptRequestParams, handlers.get_prompt)
    if options.completions:
        server.add_request_handler(
            "completion/complete", types.CompleteRequestParams, handlers.complete
        )
    if options.logging:
        server.add_request_handler(
            "logging/setLevel", types.SetLevelRequestParams, handlers.set_level
        )


class _Handlers:
    def __init__(self, proxy: McpProxy) -> None:
        self.proxy = proxy
        self.upstreams = proxy.config.upstreams

    async def _links(
        self, ctx: Ctx, capability: Callable[[types.ServerCapabilities], object]
    ) -> tuple[LinkSet, list[UpstreamLink]]:
        _, link_set = self.proxy.connection(ctx)
        links: list[UpstreamLink] = []
        for upstream in self.upstreams:
            try:
                link = await link_set.link(upstream)
            except UpstreamUnavailableError:
                continue
            if capability(link.capabilities):
                links.append(link)
        return link_set, links

    async def _send(self, link: UpstreamLink, request: Any, result_type: type[_R], what: str) -> _R:
        try:
            return await link.client.session.send_request(request, result_type)
        except MCPError as exc:
            if exc.code in (types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT):
                link.discard(exc.message)
            raise upstream_error(link.name, f"{what} failed: {exc.message}", exc) from None
        except UpstreamUnavailableError as exc:
            raise upstream_error(link.name, str(exc)) from None
        except Exception as exc:  # a transport failure or a result that does not validate
            reason = f"{what} failed: {type(exc).__name__}: {exc}"[:500]
            link.discard(reason)
            self.proxy.telemetry.upstream_failed(link.name, reason)
            raise upstream_error(link.name, reason) from None

    async def _pages(
        self,
        fetch: Callable[[str | None], Awaitable[tuple[list[_R], str | None]]],
    ) -> list[_R]:
        items: list[_R] = []
        cursor: str | None = None
        for _ in range(self.proxy.config.max_list_pages):
            page, cursor = await fetch(cursor)
            items.extend(page)
            if cursor is None:
                break
        return items

    # -- resources ---------------------------------------------------------------------

    async def list_resources(
        self, ctx: Ctx, _params: types.PaginatedRequestParams
    ) -> types.ListResourcesResult:
        link_set, links = await self._links(ctx, lambda c: c.resources)
        owners = _bounded(link_set.resource_owner)
        merged: list[types.Resource] = []
        for link in links:

            async def fetch(
                cursor: str | None, link: UpstreamLink = link
            ) -> tuple[list[types.Resource], str | None]:
                page = await self._send(
                    link,
                    types.ListResourcesRequest(params=types.PaginatedRequestParams(cursor=cursor)),
                    types.ListResourcesResult,
                    "resources/list",
                )
                return page.resources, page.next_cursor

            for resource in await self._pages(fetch):
                owners.setdefault(str(resource.uri), link.name)
                merged.append(resource)
        return types.ListResourcesResult(resources=merged)

    async def list_templates(
        self, ctx: Ctx, _params: types.PaginatedRequestParams
    ) -> types.ListResourceTemplatesResult:
        link_set, links = await self._links(ctx, lambda c: c.resources)
        owners = _bounded(link_set.template_owner)
        merged: list[types.ResourceTemplate] = []
        for link in links:

            async def fetch(
                cursor: str | None, link: UpstreamLink = link
            ) -> tuple[list[types.ResourceTemplate], str | None]:
                page = await self._send(
                    link,
                    types.ListResourceTemplatesRequest(
                        params=types.PaginatedRequestParams(cursor=cursor)
                    ),
                    types.ListResourceTemplatesResult,
                    "resources/templates/list",
                )
                return page.resource_templates, page.next_cursor

            for template in await self._pages(fetch):
                owners.setdefault(template.uri_template, link.name)
                merged.append(template)
        return types.ListResourceTemplatesResult(resource_templates=merged)

    async def _by_uri(
        self, ctx: Ctx, uri: str, request: Any, result_type: type[_R], what: str
    ) -> _R:
        link_set, links = await self._links(ctx, lambda c: c.resources)
        owner = link_set.resource_owner.get(uri)
        ordered = sorted(links, key=lambda link: link.name != owner)
        if not ordered:
            raise MCPError(types.METHOD_NOT_FOUND, "no upstream serves resources")
        failure: MCPError | None = None
        for link in ordered:
            try:
                return await self._send(link, request, result_type, what)
            except MCPError as exc:  # not this upstream's resource: try the next one
                failure = exc
        assert failure is not None
        raise failure

    async def read_resource(
        self, ctx: Ctx, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        request = types.ReadResourceRequest(params=types.ReadResourceRequestParams(uri=params.uri))
        return await self._by_uri(
            ctx, str(params.uri), request, types.ReadResourceResult, "resources/read"
        )

    async def subscribe(self, ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        request = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=params.uri))
        return await self._by_uri(
            ctx, str(params.uri), request, types.EmptyResult, "resources/subscribe"
        )

    async def unsubscribe(
        self, ctx: Ctx, params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        request = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=params.uri))
        return await self._by_uri(
            ctx, str(params.uri), request, types.EmptyResult, "resources/unsubscribe"
        )

    # -- prompts -----------------------------------------------------------------------

    async def list_prompts(
        self, ctx: Ctx, _params: types.PaginatedRequestParams
    ) -> types.ListPromptsResult:
        _, links = await self._links(ctx, lambda c: c.prompts)
        merged: list[types.Prompt] = []
        seen: set[str] = set()
        for link in links:

            async def fetch(
                cursor: str | None, link: UpstreamLink = link
            ) -> tuple[list[types.Prompt], str | None]:
                page = await self._send(
                    link,
                    types.ListPromptsRequest(params=types.PaginatedRequestParams(cursor=cursor)),
                    types.ListPromptsResult,
                    "prompts/list",
                )
                return page.prompts, page.next_cursor

            for prompt in await self._pages(fetch):
                public = link.config.tool_prefix + prompt.name
                if public not in seen:
                    seen.add(public)
                    merged.append(prompt.model_copy(update={"name": public}))
        return types.ListPromptsResult(prompts=merged)

    def _route_name(self, name: str) -> tuple[UpstreamConfig, str] | None:
        # Longest prefix first, so "a.b." wins over "a." (and "" comes last).
        for upstream in sorted(self.upstreams, key=lambda u: -len(u.tool_prefix)):
            if name.startswith(upstream.tool_prefix):
                return upstream, name[len(upstream.tool_prefix) :]
        return None

    async def get_prompt(
        self, ctx: Ctx, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        route = self._route_name(params.name)
        if route is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name[:200]}")
        upstream, name = route
        _, link_set = self.proxy.connection(ctx)
        try:
            link = await link_set.link(upstream)
        except UpstreamUnavailableError as exc:
            raise upstream_error(upstream.name, str(exc)) from None
        request = types.GetPromptRequest(
            params=types.GetPromptRequestParams(name=name, arguments=params.arguments)
        )
        return await self._send(link, request, types.GetPromptResult, "prompts/get")

    # -- completion, logging -----------------------------------------------------------

    async def complete(self, ctx: Ctx, params: types.CompleteRequestParams) -> types.CompleteResult:
        ref = params.ref
        if isinstance(ref, types.PromptReference):
            route = self._route_name(ref.name)
            if route is None:
                raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {ref.name[:200]}")
            upstream, name = route
            _, link_set = self.proxy.connection(ctx)
            try:
                link = await link_set.link(upstream)
            except UpstreamUnavailableError as exc:
                raise upstream_error(upstream.name, str(exc)) from None
            forwarded = params.model_copy(update={"ref": ref.model_copy(update={"name": name})})
            return await self._send(
                link,
                types.CompleteRequest(params=forwarded),
                types.CompleteResult,
                "completion/complete",
            )
        link_set, links = await self._links(ctx, lambda c: c.completions)
        if not links:
            return types.CompleteResult(completion=types.Completion(values=[]))
        owner = link_set.template_owner.get(ref.uri)
        target = min(links, key=lambda link: link.name != owner)  # the owner, else the first
        return await self._send(
            target,
            types.CompleteRequest(params=params),
            types.CompleteResult,
            "completion/complete",
        )

    async def set_level(self, ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
        _, links = await self._links(ctx, lambda c: c.logging)
        for link in links:
            await self._send(
                link,
                types.SetLevelRequest(params=types.SetLevelRequestParams(level=params.level)),
                types.EmptyResult,
                "logging/setLevel",
            )
        return types.EmptyResult()


#: Routing entries kept per agent connection before the table is reset.
_MAX_ROUTES = 10_000


def _bounded(table: dict[str, str]) -> dict[str, str]:
    if len(table) > _MAX_ROUTES:
        table.clear()
    return table


__all__ = ["register"]
