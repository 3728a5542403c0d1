"""The kill switch: revoke or suspend by token, session, agent, tool scope or tenant.

Vocabulary
    A :class:`Revocation` stops calls that match it. Its ``mode`` is either
    ``revoked`` -- final: :meth:`KillSwitch.resume` refuses it (a revoked token,
    session or agent is replaced, never revived) -- or ``suspended``: lifted by
    ``resume``, or by itself once ``until`` has passed.

Targets (``kind``)
    ``jti`` (one token), ``session``, ``agent`` (with ``cascade``: every
    descendant too), ``tool_scope`` (a tool-name glob, within one tenant),
    ``tenant`` (every call of one tenant) and ``global`` (every call). The last two,
    and a ``tool_scope`` of ``*``, are mass revocations: they need ``confirm=True``
    and a reason, else :class:`ConfirmationRequiredError` -- never a reflexive
    mass revocation. Every revocation but ``global`` is scoped to its tenant: a
    revocation in tenant A never matches a call of tenant B.

Cascade, twice
    1. At revoke time, the agent's descendants in the registry's declared spawn
       graph (:meth:`AgentRegistry.descendants`) are stored on the revocation
       (``cascaded``) and refused like the agent itself.
    2. At call time, a call whose ``parent_chain`` contains a revoked agent (of a
       cascading revocation) is refused, whoever the caller is: this catches
       delegations the registry does not know about.

The hot path
    :meth:`KillSwitch.check` is the pipeline's ``KillSwitchStage``. It reads an
    in-memory snapshot only -- dict lookups keyed by (kind, tenant, target), one
    per chain element, plus the tenant's tool-scope globs -- and never does I/O.
    The snapshot is loaded by :meth:`KillSwitch.start` and kept current by the
    store's events (see :mod:`aegis.identity.killswitch_redis` for replicas).

Order of effects
    A restrictive action (revoke, suspend) is applied to this process's snapshot
    *first*, then written to the store: it is effective on the next call here even
    when the store is down (the error is raised after, and the revocation is kept
    locally and written again on the next :meth:`KillSwitch.reload`). A resume is
    written first and applied after: a store failure never lifts a revocation in
    one replica only.

Every action (who, what, why, when) is kept in the store's trail
(:meth:`RevocationStore.actions`) and handed to ``on_action`` hooks, so the audit
log can record it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from aegis.core.call import ToolCall
from aegis.errors import ErrorCode
from aegis.identity.registry import AgentNotFoundError, AgentRegistry, AgentStatus
from aegis.pipeline.stages import Refusal, StoreUnavailableError
from aegis.policy.values import glob_matcher, is_glob

log = logging.getLogger(__name__)

#: The tenant of a global revocation (ToolCall tenants are never empty).
GLOBAL_TENANT = ""
_MAX_REASON = 2000


class RevocationKind(StrEnum):
    JTI = "jti"
    SESSION = "session"
    AGENT = "agent"
    TOOL_SCOPE = "tool_scope"
    TENANT = "tenant"
    GLOBAL = "global"


class Mode(StrEnum):
    REVOKED = "revoked"  # final
    SUSPENDED = "suspended"  # resumable


class ActionKind(StrEnum):
    REVOKE = "revoke"
    SUSPEND = "suspend"
    RESUME = "resume"


class KillSwitchError(Exception):
    """An action the kill switch refuses (bad target, missing actor or reason)."""


class ConfirmationRequiredError(KillSwitchError):
    """A tenant-wide or global action without ``confirm=True`` and a reason."""


class RevocationFinalError(KillSwitchError):
    """``resume`` of a revocation: only suspensions can be resumed."""


class UnknownRevocationError(KillSwitchError):
    """``resume`` of an id that is not active."""


class KillSwitchStoreError(KillSwitchError):
    """The store failed. For revoke/suspend the action is already in force in this
    process (and will be written again on the next reload); for resume nothing changed."""


@dataclass(frozen=True, slots=True)
class Revocation:
    id: str
    kind: RevocationKind
    tenant: str  # GLOBAL_TENANT for kind=global
    target: str  # jti, session id, agent id or tool glob; "" for tenant / global
    mode: Mode
    reason: str
    actor: str
    at: float  # seconds since the epoch, when the command was given
    until: float | None = None  # suspensions only: lifted by itself from then on
    cascade: bool = True  # agent only: descendants and chains too
    cascaded: tuple[str, ...] = ()  # agent only: descendants found at revoke time

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": str(self.kind),
            "tenant": self.tenant,
            "target": self.target,
            "mode": str(self.mode),
            "reason": self.reason,
            "actor": self.actor,
            "at": self.at,
            "until": self.until,
            "cascade": self.cascade,
            "cascaded": list(self.cascaded),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Revocation:
        until = data.get("until")
        return cls(
            id=str(data["id"]),
            kind=RevocationKind(data["kind"]),
            tenant=str(data["tenant"]),
            target=str(data["target"]),
            mode=Mode(data["mode"]),
            reason=str(data["reason"]),
            actor=str(data["actor"]),
            at=float(data["at"]),
            until=None if until is None else float(until),
            cascade=bool(data.get("cascade", True)),
            cascaded=tuple(str(a) for a in data.get("cascaded", ())),
        )

    def describe(self) -> str:
        what = {
            RevocationKind.GLOBAL: "all calls",
            RevocationKind.TENANT: f"tenant {self.tenant}",
        }.get(self.kind, f"{self.kind} {self.target}")
        return f"{what} {self.mode} by {self.actor}: {self.reason}"


@dataclass(frozen=True, slots=True)
class KillSwitchAction:
    """One entry of the trail: who (actor) did what (action on revocation), why, when."""

    id: str
    action: ActionKind
    revocation: Revocation
    actor: str
    reason: str
    at: float
    confirmed: bool = False

    @property
    def tenant(self) -> str:
        return self.revocation.tenant

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": str(self.action),
            "revocation": self.revocation.to_dict(),
            "actor": self.actor,
            "reason": self.reason,
            "at": self.at,
            "confirmed": self.confirmed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KillSwitchAction:
        return cls(
            id=str(data["id"]),
            action=ActionKind(data["action"]),
            revocation=Revocation.from_dict(data["revocation"]),
            actor=str(data["actor"]),
            reason=str(data["reason"]),
            at=float(data["at"]),
            confirmed=bool(data.get("confirmed", False)),
        )


class StoreListener(Protocol):
    """What a store tells the kill switch it feeds."""

    def on_event(self, action: KillSwitchAction) -> None:
        """An action, from this process or another replica (may repeat: be idempotent)."""
        ...

    def on_snapshot(self, active: list[Revocation]) -> None:
        """The full set of active revocations, after (re)connecting."""
        ...


class RevocationStore(Protocol):
    """Active revocations, the action trail, and change events to every subscriber."""

    async def apply(self, action: KillSwitchAction) -> None:
        """Persist the action (add or remove its revocation, append it to the trail)
        and announce it to every subscriber, in one step."""
        ...

    async def active(self) -> list[Revocation]: ...

    async def actions(self, tenant: str) -> list[KillSwitchAction]:
        """The trail of ``tenant`` (GLOBAL_TENANT: global actions), oldest first."""
        ...

    async def subscribe(self, listener: StoreListener) -> None:
        """Start delivering events to ``listener``; returns once the first snapshot
        has been delivered (or raises KillSwitchStoreError)."""
        ...

    @property
    def out_of_sync_since(self) -> float | None:
        """``time.monotonic()`` of the last moment the subscription was known to be
        current, when it is not now; None while it is."""
        ...

    async def close(self) -> None: ...


class MemoryRevocationStore:
    """:class:`RevocationStore` in this process: for tests, embedded use, and several
    :class:`KillSwitch` instances in one process (each a subscriber)."""

    def __init__(self) -> None:
        self._active: dict[str, Revocation] = {}
        self._trail: list[KillSwitchAction] = []
        self._listeners: list[StoreListener] = []
        self.out_of_sync_since: float | None = None

    async def apply(self, action: KillSwitchAction) -> None:
        if action.action is ActionKind.RESUME:
            self._active.pop(action.revocation.id, None)
        else:
            self._active[action.revocation.id] = action.revocation
        self._trail.append(action)
        for listener in list(self._listeners):
            listener.on_event(action)

    async def active(self) -> list[Revocation]:
        return list(self._active.values())

    async def actions(self, tenant: str) -> list[KillSwitchAction]:
        return [a for a in self._trail if a.tenant == tenant]

    async def subscribe(self, listener: StoreListener) -> None:
        self._listeners.append(listener)
        listener.on_snapshot(await self.active())

    async def close(self) -> None:
        self._listeners.clear()


# -- the snapshot ---------------------------------------------------------------------

_Key = tuple[RevocationKind, str, str]


class _Snapshot:
    """Active revocations indexed for the hot path. Rebuilt or patched in place from
    the event loop's thread only, so a check never sees half an update."""

    def __init__(self, revocations: Iterable[Revocation] = ()) -> None:
        self.by_id: dict[str, Revocation] = {}
        self.index: dict[_Key, dict[str, Revocation]] = {}
        self.scopes: dict[str, list[tuple[Callable[[str], bool], Revocation]]] = {}
        for rev in revocations:
            self.add(rev)

    @staticmethod
    def _keys(rev: Revocation) -> list[_Key]:
        if rev.kind is RevocationKind.TOOL_SCOPE and is_glob(rev.target):
            return []  # globs live in ``scopes``
        keys = [(rev.kind, rev.tenant, rev.target)]
        keys += [(RevocationKind.AGENT, rev.tenant, a) for a in rev.cascaded]
        return keys

    def add(self, rev: Revocation) -> bool:
        if rev.id in self.by_id:
            return False
        self.by_id[rev.id] = rev
        for key in self._keys(rev):
            self.index.setdefault(key, {})[rev.id] = rev
        if rev.kind is RevocationKind.TOOL_SCOPE and is_glob(rev.target):
            self.scopes.setdefault(rev.tenant, []).append((glob_matcher(rev.target), rev))
        return True

    def remove(self, rev_id: str) -> Revocation | None:
        rev = self.by_id.pop(rev_id, None)
        if rev is None:
            return None
        for key in self._keys(rev):
            bucket = self.index.get(key)
            if bucket is not None:
                bucket.pop(rev_id, None)
                if not bucket:
                    del self.index[key]
        if rev.tenant in self.scopes:
            kept = [(m, r) for m, r in self.scopes[rev.tenant] if r.id != rev_id]
            if kept:
                self.scopes[rev.tenant] = kept
            else:
                del self.scopes[rev.tenant]
        return rev


def _live(bucket: dict[str, Revocation] | None, now: Callable[[], float]) -> Revocation | None:
    """The first revocation in ``bucket`` still in force (a suspension past ``until`` is not)."""
    if not bucket:
        return None
    for rev in bucket.values():
        if rev.until is None or now() < rev.until:
            return rev
    return None


# -- the service ----------------------------------------------------------------------


class KillSwitch:
    """Revoke / suspend / resume, and the pipeline's ``KillSwitchStage`` (:meth:`check`).

    ``max_staleness``: when set, :meth:`check` raises StoreUnavailableError once the
    store's subscription has been out of sync for longer than this many seconds,
    so the pipeline's fail mode decides (writes fail closed). When None (the
    default), checks keep answering from the last snapshot while the store is away.
    """

    def __init__(
        self,
        store: RevocationStore,
        *,
        registry: AgentRegistry | None = None,
        clock: Callable[[], float] = time.time,
        observe: Callable[[float, bool], None] | None = None,
        max_staleness: float | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._observe = observe
        self._max_staleness = max_staleness
        self._snap = _Snapshot()
        self._pending: dict[str, KillSwitchAction] = {}  # by revocation id: in force, not stored
        self._hooks: list[Callable[[KillSwitchAction], None]] = []

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> KillSwitch:
        """Load the active set and subscribe to changes."""
        await self._store.subscribe(self)
        return self

    async def reload(self) -> None:
        """Write again what a store failure left local, then reload the active set."""
        for rev_id, action in list(self._pending.items()):
            await self._write(action)
            self._pending.pop(rev_id, None)
        self.on_snapshot(await self._store.active())

    async def close(self) -> None:
        await self._store.close()

    def on_action(self, hook: Callable[[KillSwitchAction], None]) -> None:
        """Call ``hook`` with every action taken through this instance (after it is in force
        here). Hooks must not raise; an exception is logged and ignored."""
        self._hooks.append(hook)

    # -- StoreListener ---------------------------------------------------------------

    def on_event(self, action: KillSwitchAction) -> None:
        if action.action is ActionKind.RESUME:
            self._snap.remove(action.revocation.id)
        elif self._snap.add(action.revocation):
            self._measure(action, local=False)

    def on_snapshot(self, active: list[Revocation]) -> None:
        revocations = {r.id: r for r in active}
        for action in self._pending.values():
            revocations.setdefault(action.revocation.id, action.revocation)
        fresh = _Snapshot(revocations.values())
        for rev in fresh.by_id.values():
            if rev.id not in self._snap.by_id:
                self._measure_rev(rev)
        self._snap = fresh

    def _measure_rev(self, rev: Revocation) -> None:
        if self._observe is not None:
            self._observe(max(0.0, self._clock() - rev.at), False)

    def _measure(self, action: KillSwitchAction, *, local: bool) -> None:
        if self._observe is not None and action.action is not ActionKind.RESUME:
            self._observe(max(0.0, self._clock() - action.at), local)

    # -- actions ---------------------------------------------------------------------

    async def revoke(
        self,
        kind: RevocationKind | str,
        *,
        tenant: str,
        target: str = "",
        actor: str,
        reason: str,
        cascade: bool = True,
        confirm: bool = False,
    ) -> Revocation:
        """Stop matching calls for good. See the module docstring for the guards."""
        return await self._restrict(
            Mode.REVOKED, RevocationKind(kind), tenant, target, actor=actor, reason=reason,
            cascade=cascade, confirm=confirm,
        )  # fmt: skip

    async def suspend(
        self,
        kind: RevocationKind | str,
        *,
        tenant: str,
        target: str = "",
        actor: str,
        reason: str,
        until: float | None = None,
        cascade: bool = True,
        confirm: bool = False,
    ) -> Revocation:
        """Stop matching calls until :meth:`resume` (or ``until``, seconds since the epoch)."""
        return await self._restrict(
            Mode.SUSPENDED, RevocationKind(kind), tenant, target, actor=actor, reason=reason,
            cascade=cascade, confirm=confirm, until=until,
        )  # fmt: skip

    async def resume(self, revocation_id: str, *, actor: str, reason: str) -> KillSwitchAction:
        """Lift a suspension. A revocation is final: RevocationFinalError."""
        _require_who_why(actor, reason)
        rev = self._snap.by_id.get(revocation_id)
        if rev is None:
            rev = next((r for r in await self._store.active() if r.id == revocation_id), None)
        if rev is None:
            raise UnknownRevocationError(f"no active revocation {revocation_id!r}")
        if rev.mode is Mode.REVOKED:
            raise RevocationFinalError(
                f"{rev.kind} {rev.target or rev.tenant} is revoked; revocation is final"
            )
        action = KillSwitchAction(
            id=_new_id(), action=ActionKind.RESUME, revocation=rev, actor=actor,
            reason=reason, at=self._clock(),
        )  # fmt: skip
        await self._write(action)  # stored first: a failure never lifts it in one replica only
        self._pending.pop(revocation_id, None)
        self._snap.remove(revocation_id)
        await self._mirror(rev, AgentStatus.ACTIVE)
        self._emit(action)
        return action

    async def _restrict(
        self,
        mode: Mode,
        kind: RevocationKind,
        tenant: str,
        target: str,
        *,
        actor: str,
        reason: str,
        cascade: bool,
        confirm: bool,
        until: float | None = None,
    ) -> Revocation:
        _require_who_why(actor, reason)
        tenant, target = _check_target(kind, tenant, target, confirm)
        cascaded: tuple[str, ...] = ()
        if kind is RevocationKind.AGENT and cascade and self._registry is not None:
            found = await self._registry.descendants(tenant, target)
            cascaded = tuple(sorted(found - {target}))
        now = self._clock()
        if until is not None and until <= now:
            raise KillSwitchError("until must lie in the future")
        rev = Revocation(
            id=_new_id(), kind=kind, tenant=tenant, target=target, mode=mode, reason=reason,
            actor=actor, at=now, until=until,
            cascade=cascade if kind is RevocationKind.AGENT else False, cascaded=cascaded,
        )  # fmt: skip
        action = KillSwitchAction(
            id=_new_id(),
            action=ActionKind.REVOKE if mode is Mode.REVOKED else ActionKind.SUSPEND,
            revocation=rev, actor=actor, reason=reason, at=now,
            confirmed=confirm,
        )  # fmt: skip
        # In force here first: the next call in this process is refused whatever the store does.
        self._snap.add(rev)
        self._measure(action, local=True)
        self._pending[rev.id] = action
        self._emit(action)
        await self._write(action)
        self._pending.pop(rev.id, None)
        await self._mirror(rev, AgentStatus(str(mode)))
        return rev

    async def _write(self, action: KillSwitchAction) -> None:
        try:
            await self._store.apply(action)
        except KillSwitchStoreError:
            raise
        except Exception as exc:
            raise KillSwitchStoreError(f"kill switch store: {exc}") from exc

    async def _mirror(self, rev: Revocation, status: AgentStatus) -> None:
        """Reflect an agent revocation in the registry's status (informational: checks
        read the snapshot, never the registry)."""
        if self._registry is None or rev.kind is not RevocationKind.AGENT:
            return
        for agent in (rev.target, *rev.cascaded):
            if status is AgentStatus.ACTIVE and _agent_bucket(self._snap, rev.tenant, agent):
                continue  # another revocation still holds it
            try:
                current = await self._registry.get(rev.tenant, agent)
                if current is None or current.status is AgentStatus.REVOKED:
                    continue
                await self._registry.set_status(rev.tenant, agent, status)
            except AgentNotFoundError:
                continue
            except Exception:  # the status is a mirror; the revocation is in force anyway
                log.exception("kill switch: could not mirror %s into the registry", rev.id)

    def _emit(self, action: KillSwitchAction) -> None:
        for hook in self._hooks:
            try:
                hook(action)
            except Exception:
                log.exception("kill switch: on_action hook failed")

    # -- reading ---------------------------------------------------------------------

    def active(self, tenant: str | None = None) -> tuple[Revocation, ...]:
        """Revocations in force in this process (of ``tenant`` when given)."""
        revs = self._snap.by_id.values()
        return tuple(r for r in revs if tenant is None or r.tenant == tenant)

    async def actions(self, tenant: str) -> list[KillSwitchAction]:
        """The stored trail of ``tenant``'s actions (GLOBAL_TENANT: global ones)."""
        return await self._store.actions(tenant)

    # -- the stage -------------------------------------------------------------------

    async def check(self, call: ToolCall, *, jti: str | None = None) -> Refusal | None:
        """The ``KillSwitchStage``: a Refusal when a revocation in force matches the call."""
        if self._max_staleness is not None:
            since = self._store.out_of_sync_since
            if since is not None and time.monotonic() - since > self._max_staleness:
                raise StoreUnavailableError("kill switch store out of sync beyond max_staleness")
        return self.match(call, jti=jti)

    def match(self, call: ToolCall, *, jti: str | None = None) -> Refusal | None:
        """:meth:`check` without the staleness guard, synchronous (for the SDK)."""
        snap = self._snap
        index = snap.index
        if not index and not snap.scopes:
            return None
        now = self._clock
        tenant = call.tenant
        rev = _live(index.get((RevocationKind.GLOBAL, GLOBAL_TENANT, "")), now) or _live(
            index.get((RevocationKind.TENANT, tenant, "")), now
        )
        if rev is None:
            rev = _live(index.get((RevocationKind.AGENT, tenant, call.agent_id)), now)
        if rev is None and call.parent_chain:
            for ancestor in call.parent_chain:
                found = _live(index.get((RevocationKind.AGENT, tenant, ancestor)), now)
                if found is not None and (found.cascade or found.target != ancestor):
                    return _refuse(found, f"parent {ancestor} of the call's chain: ")
        if rev is None and call.session_id:
            rev = _live(index.get((RevocationKind.SESSION, tenant, call.session_id)), now)
        if rev is None and jti:
            rev = _live(index.get((RevocationKind.JTI, tenant, jti)), now)
        if rev is None:
            rev = _live(index.get((RevocationKind.TOOL_SCOPE, tenant, call.tool)), now)
        if rev is None and tenant in snap.scopes:
            for matches, scope_rev in snap.scopes[tenant]:
                if matches(call.tool) and _live({scope_rev.id: scope_rev}, now) is not None:
                    rev = scope_rev
                    break
        if rev is None:
            return None
        if rev.kind is RevocationKind.AGENT and rev.target != call.agent_id:
            return _refuse(rev, f"descendant {call.agent_id}: ")
        return _refuse(rev, "")


def _agent_bucket(snap: _Snapshot, tenant: str, agent: str) -> dict[str, Revocation] | None:
    return snap.index.get((RevocationKind.AGENT, tenant, agent))


def _refuse(rev: Revocation, prefix: str) -> Refusal:
    # Distinct codes: a suspension is temporary (resume lifts it), a revocation final.
    code = (
        ErrorCode.DECISION_SUSPENDED if rev.mode is Mode.SUSPENDED else ErrorCode.DECISION_REVOKED
    )
    return Refusal(code, f"{prefix}{rev.describe()}")


def _new_id() -> str:
    return uuid.uuid4().hex


def _require_who_why(actor: str, reason: str) -> None:
    if not actor.strip():
        raise KillSwitchError("every kill switch action needs an actor (who)")
    if not reason.strip():
        raise KillSwitchError("every kill switch action needs a reason (why)")
    if len(reason) > _MAX_REASON:
        raise KillSwitchError(f"reason is longer than {_MAX_REASON} characters")


def _check_target(kind: RevocationKind, tenant: str, target: str, confirm: bool) -> tuple[str, str]:
    """The normalised (tenant, target) of an action, or why it is refused."""
    if kind is RevocationKind.GLOBAL:
        if tenant or target:
            raise KillSwitchError("a global revocation has no tenant and no target")
        if not confirm:
            raise ConfirmationRequiredError(
                "a global revocation stops every call of every tenant: pass confirm=True "
                "with the reason (never a reflexive mass revocation)"
            )
        return GLOBAL_TENANT, ""
    if not tenant:
        raise KillSwitchError(f"a {kind} revocation needs a tenant")
    if kind is RevocationKind.TENANT:
        if target:
            raise KillSwitchError("a tenant revocation has no target")
        if not confirm:
            raise ConfirmationRequiredError(
                f"revoking tenant {tenant!r} stops every call of the tenant: pass "
                "confirm=True with the reason (never a reflexive mass revocation)"
            )
        return tenant, ""
    if not target:
        raise KillSwitchError(f"a {kind} revocation needs a target")
    if kind is RevocationKind.TOOL_SCOPE:
        try:
            glob_matcher(target)
        except Exception as exc:
            raise KillSwitchError(f"tool scope {target!r} is not a usable glob: {exc}") from exc
        # '*', '**', '?*': every tool of the tenant -- a tenant-wide revocation in disguise.
        if set(target) <= {"*", "?"} and "*" in target and not confirm:
            raise ConfirmationRequiredError(
                f"tool scope {target!r} matches every tool of tenant {tenant!r}: pass "
                "confirm=True with the reason (never a reflexive mass revocation)"
            )
    return tenant, target
