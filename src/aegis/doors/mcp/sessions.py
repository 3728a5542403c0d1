"""Per-agent-connection upstream links, and the tool index built from them.

Each agent connection (the one stdio client, one Streamable HTTP session)
gets its own :class:`LinkSet`: its own client sessions to the upstreams. That
is what lets an upstream's ``sampling/createMessage`` during a call reach the
agent that made the call, and it keeps tenants apart -- an upstream's session
state (subscriptions, log level, roots) is never shared between two agents.
Requests without a session (stateless HTTP, the 2026-07-28 per-request era)
share one LinkSet that relays nothing back.

Namespacing: upstream ``u`` with prefix ``p`` exposes its tool ``t`` as
``p + t`` (default ``p = "u."``). Upstreams are indexed in configuration
order; if two produce the same public name the first keeps it and the other
is not listed (and logged).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import mcp_types as types
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

from aegis.doors.mcp.config import McpProxyConfig, UpstreamConfig
from aegis.doors.mcp.pinning import definition_hash
from aegis.doors.mcp.telemetry import McpTelemetry
from aegis.doors.mcp.upstream import AgentChannel, UpstreamLink, UpstreamUnavailableError

if TYPE_CHECKING:
    from aegis.doors.mcp.identity import Caller

#: An unknown tool name triggers at most one re-listing per this many seconds.
RELIST_ON_MISS_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """One listed tool as the agent sees it."""

    public_name: str
    link: UpstreamLink
    tool: types.Tool
    hash: str


@dataclass(eq=False)
class LinkSet:
    """The upstream links of one agent connection."""

    key: str
    config: McpProxyConfig
    telemetry: McpTelemetry
    tg: anyio.abc.TaskGroup
    channel: AgentChannel | None
    owner: tuple[str, str] | None = None  # (tenant, agent_id) that opened it
    links: dict[str, UpstreamLink] = field(default_factory=dict)
    index: dict[str, ToolEntry] = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)
    #: Passthrough routing: which upstream listed a resource URI / template.
    resource_owner: dict[str, str] = field(default_factory=dict)
    template_owner: dict[str, str] = field(default_factory=dict)
    _locks: dict[str, anyio.Lock] = field(default_factory=dict)
    _last_relist: float = 0.0

    def touch(self, session: ServerSession | None) -> None:
        self.last_used = time.monotonic()
        if self.channel is not None and session is not None:
            self.channel.last_session = session

    async def link(self, upstream: UpstreamConfig) -> UpstreamLink:
        """The live link to ``upstream``, connecting (again) when needed."""
        found = self.links.get(upstream.name)
        if found is not None and found.alive:
            return found
        lock = self._locks.setdefault(upstream.name, anyio.Lock())
        async with lock:
            found = self.links.get(upstream.name)
            if found is not None and found.alive:
                return found
            link = UpstreamLink(
                upstream,
                self.channel,
                max_pages=self.config.max_list_pages,
                on_tools_changed=self._tools_changed,
                client_info=types.Implementation(
                    name=self.config.server_name, version=self.config.server_version
                ),
            )
            try:
                await link.start(self.tg)
            except UpstreamUnavailableError as exc:
                self.telemetry.upstream_failed(upstream.name, str(exc))
                raise
            self.links[upstream.name] = link
            return link

    async def _tools_changed(self, link: UpstreamLink) -> None:
        # notifications/tools/list_changed (spec server/tools "List Changed
        # Notification"): the listing is stale; the next tools/call or
        # tools/list re-reads it, and pins are checked against the new one.
        link.listed = False

    async def refresh(self, only: list[UpstreamConfig] | None = None) -> None:
        """Re-list the tools of every upstream (or ``only`` these), concurrently.
        An upstream that fails is left out of the index until it answers again."""
        targets = list(self.config.upstreams) if only is None else only

        async def one(upstream: UpstreamConfig) -> None:
            try:
                link = await self.link(upstream)
            except UpstreamUnavailableError:
                self._forget(upstream.name)
                return
            try:
                tools = await link.list_tools()
            except Exception as exc:  # an error answer, a broken connection, a bad listing
                reason = f"tools/list failed: {exc}"[:500]
                self.telemetry.upstream_failed(upstream.name, reason)
                if not isinstance(exc, MCPError) or exc.code == CONNECTION_CLOSED:
                    link.discard(reason)  # not an answer: do not trust the connection again
                self._forget(upstream.name)
                return
            link.tools = {tool.name: (tool, definition_hash(tool)) for tool in tools}
            link.listed = True

        async with anyio.create_task_group() as tg:
            for upstream in targets:
                tg.start_soon(one, upstream)
        self._reindex()

    def _forget(self, name: str) -> None:
        link = self.links.get(name)
        if link is not None:
            link.tools = {}
            link.listed = False

    def _reindex(self) -> None:
        index: dict[str, ToolEntry] = {}
        for upstream in self.config.upstreams:
            link = self.links.get(upstream.name)
            if link is None:
                continue
            for tool_name, (tool, digest) in link.tools.items():
                public = upstream.tool_prefix + tool_name
                if public in index:
                    self.telemetry.note(
                        "mcp.tool_name_collision",
                        tool=public,
                        kept=index[public].link.name,
                        dropped=upstream.name,
                    )
                    continue
                index[public] = ToolEntry(public, link, tool, digest)
        self.index = index

    async def resolve(self, public_name: str) -> ToolEntry | None:
        """The entry for ``public_name``: from the index, re-listing stale
        upstreams first, and once more (rate-limited) on a miss."""
        stale = [
            up
            for up in self.config.upstreams
            if (link := self.links.get(up.name)) is None or not link.listed or not link.alive
        ]
        candidates = [up for up in stale if public_name.startswith(up.tool_prefix)]
        if candidates:
            await self.refresh(candidates)
        entry = self.index.get(public_name)
        if entry is not None and entry.link.alive:
            return entry
        now = time.monotonic()
        if now - self._last_relist < RELIST_ON_MISS_INTERVAL:
            return None
        self._last_relist = now
        await self.refresh(
            [up for up in self.config.upstreams if public_name.startswith(up.tool_prefix)]
        )
        return self.index.get(public_name)

    async def aclose(self) -> None:
        async with anyio.create_task_group() as tg:
            for link in self.links.values():
                tg.start_soon(link.close)
        self.links.clear()
        self.index.clear()


@dataclass(eq=False)
class ProxyRuntime:
    """What lives while the proxy serves: the task group owning upstream links,
    and the LinkSet of each agent connection. It is the low-level server's
    lifespan state (entered once per stdio run, once per HTTP app)."""

    config: McpProxyConfig
    telemetry: McpTelemetry
    tg: anyio.abc.TaskGroup
    sets: dict[str, LinkSet] = field(default_factory=dict)

    @property
    def max_sets(self) -> int:
        return self.config.http.max_sessions + 1

    def link_set(self, caller: Caller, session: ServerSession | None) -> LinkSet:
        found = self.sets.get(caller.connection)
        if found is None:
            if len(self.sets) >= self.max_sets:
                self._evict_oldest()
            relay = caller.connection != "shared"
            found = self.sets[caller.connection] = LinkSet(
                key=caller.connection,
                config=self.config,
                telemetry=self.telemetry,
                tg=self.tg,
                channel=AgentChannel(relay=self.config.relay) if relay else None,
                owner=(caller.tenant, caller.agent_id) if caller.connection != "shared" else None,
            )
        found.touch(session)
        return found

    def _evict_oldest(self) -> None:
        oldest = min(self.sets.values(), key=lambda s: s.last_used)
        self.end(oldest.key)

    def end(self, key: str) -> None:
        """Close the links of one agent connection (session deleted or idle)."""
        found = self.sets.pop(key, None)
        if found is not None:
            self.tg.start_soon(found.aclose)

    async def sweep_idle(self, idle_seconds: float, every: float) -> None:
        """Close HTTP sessions' links idle for longer than ``idle_seconds``."""
        while True:
            await anyio.sleep(every)
            cutoff = time.monotonic() - idle_seconds
            for key in [
                k for k, s in self.sets.items() if k.startswith("http:") and s.last_used < cutoff
            ]:
                self.end(key)

    async def aclose(self) -> None:
        sets = list(self.sets.values())
        self.sets.clear()
        with anyio.move_on_after(10, shield=True):
            for link_set in sets:
                await link_set.aclose()


@asynccontextmanager
async def running(config: McpProxyConfig, telemetry: McpTelemetry) -> AsyncIterator[ProxyRuntime]:
    async with anyio.create_task_group() as tg:
        runtime = ProxyRuntime(config, telemetry, tg)
        idle = config.http.session_idle_timeout
        tg.start_soon(runtime.sweep_idle, idle, max(1.0, min(60.0, idle / 4)))
        try:
            yield runtime
        finally:
            await runtime.aclose()
            tg.cancel_scope.cancel()


__all__ = ["LinkSet", "ProxyRuntime", "ToolEntry", "running"]
