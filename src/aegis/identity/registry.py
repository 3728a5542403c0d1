"""The agent registry: who an agent is, what it may call and whom it may spawn.

An :class:`AgentRecord` is keyed by ``(tenant, agent_id)``. Every method of
:class:`AgentRegistry` takes the tenant explicitly and reads or writes only that
tenant's rows: there is no cross-tenant read (DESIGN.md §6, "Tenants").

``may_spawn`` is the declared *orchestration graph*: the agents this agent may
start (delegate to). :meth:`AgentRegistry.descendants` is its transitive
closure. The kill switch cascades a revocation along this declared graph rather
than along the delegations actually issued: every delegation the token service
issues must follow a ``may_spawn`` edge, so the closure covers every agent that
can be acting on behalf of the revoked one (an over-approximation, deliberately:
a kill switch errs on the side of stopping). The exact delegation path of a call
is checked separately, at call time, from the call's ``parent_chain``.

``status`` mirrors the kill switch (active / suspended / revoked). ``revoked`` is
final: no transition leaves it (a revoked identity is replaced, not revived).

Backends: :mod:`aegis.identity.registry_sqlite` (the embedded default) and
:mod:`aegis.identity.registry_postgres` (scale-out); one test suite runs on both.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from aegis.policy.values import glob_matcher

#: Longest identifier (tenant, agent id, owner, label, scope) the registry stores;
#: the same bound ToolCall puts on identifiers.
MAX_IDENT = 256
#: Most agents a descendants() walk visits: bounds the work of a cascade.
MAX_DESCENDANTS = 100_000


class AgentStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # may be resumed
    REVOKED = "revoked"  # final


class RegistryError(Exception):
    """Base of the registry's errors."""


class AgentNotFoundError(RegistryError):
    """No agent with this id in this tenant."""


class AgentExistsError(RegistryError):
    """An agent with this id is already registered in this tenant."""


class InvalidAgentError(RegistryError):
    """A record or a change that cannot be stored (empty id, bad glob, final status)."""


class RegistryStoreError(RegistryError):
    """The backing store failed (corrupt file, lost connection)."""


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """One registered agent. ``scopes`` are tool-name globs (``stripe.*``)."""

    tenant: str
    agent_id: str
    owner: str
    labels: frozenset[str] = frozenset()
    scopes: tuple[str, ...] = ()
    may_spawn: frozenset[str] = frozenset()
    status: AgentStatus = AgentStatus.ACTIVE
    created_at: float = 0.0  # seconds since the epoch, set by the registry
    updated_at: float = 0.0
    _matchers: tuple[Any, ...] = field(default=(), init=False, repr=False, compare=False)

    def allows_tool(self, tool: str) -> bool:
        """Whether one of the agent's scopes (globs, see ``glob_matcher``) names ``tool``."""
        matchers = self._matchers
        if len(matchers) != len(self.scopes):
            matchers = tuple(glob_matcher(s) for s in self.scopes)
            object.__setattr__(self, "_matchers", matchers)
        return any(m(tool) for m in matchers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "agent_id": self.agent_id,
            "owner": self.owner,
            "labels": sorted(self.labels),
            "scopes": list(self.scopes),
            "may_spawn": sorted(self.may_spawn),
            "status": str(self.status),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentRecord:
        return cls(
            tenant=str(data["tenant"]),
            agent_id=str(data["agent_id"]),
            owner=str(data["owner"]),
            labels=frozenset(data.get("labels", ())),
            scopes=tuple(data.get("scopes", ())),
            may_spawn=frozenset(data.get("may_spawn", ())),
            status=AgentStatus(data.get("status", "active")),
            created_at=float(data.get("created_at", 0.0)),
            updated_at=float(data.get("updated_at", 0.0)),
        )


class AgentRegistry(Protocol):
    async def register(self, record: AgentRecord) -> AgentRecord:
        """Store a new agent (timestamps set by the registry); AgentExistsError if taken."""
        ...

    async def get(self, tenant: str, agent_id: str) -> AgentRecord | None: ...

    async def list(self, tenant: str) -> tuple[AgentRecord, ...]:
        """Every agent of ``tenant``, ordered by agent id."""
        ...

    async def set_status(self, tenant: str, agent_id: str, status: AgentStatus) -> AgentRecord:
        """Change the status; InvalidAgentError when leaving ``revoked``."""
        ...

    async def set_may_spawn(
        self, tenant: str, agent_id: str, may_spawn: Iterable[str]
    ) -> AgentRecord: ...

    async def descendants(self, tenant: str, agent_id: str) -> frozenset[str]:
        """Every agent reachable from ``agent_id`` along ``may_spawn`` edges (itself excluded)."""
        ...

    async def close(self) -> None: ...


# -- helpers the backends share -------------------------------------------------------


def _check_ident(value: str, what: str) -> None:
    if not value or len(value) > MAX_IDENT or not value.isprintable():
        raise InvalidAgentError(f"{what} must be 1..{MAX_IDENT} printable characters: {value!r}")


def validate_record(record: AgentRecord) -> AgentRecord:
    """Refuse a record no backend should store; returns it unchanged."""
    _check_ident(record.tenant, "tenant")
    _check_ident(record.agent_id, "agent_id")
    _check_ident(record.owner, "owner")
    for label in record.labels:
        _check_ident(label, "label")
    for name in record.may_spawn:
        _check_ident(name, "may_spawn entry")
    for scope in record.scopes:
        _check_ident(scope, "scope")
        try:
            glob_matcher(scope)
        except Exception as exc:  # an RE2 pattern error: the glob is unusable
            raise InvalidAgentError(f"scope {scope!r} is not a usable glob: {exc}") from exc
    if record.agent_id in record.may_spawn:
        raise InvalidAgentError(f"agent {record.agent_id!r} may not spawn itself")
    return record


def check_transition(current: AgentStatus, new: AgentStatus, agent_id: str) -> None:
    if current is AgentStatus.REVOKED and new is not AgentStatus.REVOKED:
        raise InvalidAgentError(f"agent {agent_id!r} is revoked; revocation is final")


def stamped(record: AgentRecord, now: float) -> AgentRecord:
    return replace(record, created_at=now, updated_at=now)


def spawn_closure(edges: Mapping[str, Iterable[str]], start: str) -> frozenset[str]:
    """Breadth-first closure of ``start`` over ``edges`` (cycle-safe, bounded)."""
    seen: set[str] = set()
    queue = deque(edges.get(start, ()))
    while queue and len(seen) < MAX_DESCENDANTS:
        node = queue.popleft()
        if node in seen or node == start:
            continue
        seen.add(node)
        queue.extend(edges.get(node, ()))
    return frozenset(seen)
