"""Serving bundles: fetch, verify, compile, activate -- per tenant, with rollout and rollback.

One *slot* per configured source: the shared policy (tenant ``""``) or one
tenant's own bundle. Each slot polls its source (OPA's bundle service protocol
for HTTP: ETag / If-None-Match, a 304 costs nothing), and on a new archive
loads it off the event loop -- read, signature, manifest, compile -- then
checks it belongs to the slot (a tenant bundle's roots lie under
``tenants/<tenant>`` and its rules name no other tenant). Only then does it
change what decides: a new immutable :class:`~aegis.policy.rollout.Policies`
snapshot is handed to ``install`` in one assignment, so calls in flight finish
on the snapshot they started with and no decision mixes two versions.

Anything that fails -- the source, the archive, the signature, the policy, the
tenant checks -- is counted and logged with its ``bundle.*`` code, and the last
good version keeps serving. Failures back off exponentially with jitter. A
tenant whose bundle has never loaded is decided by a deny-all policy naming the
error (never by the shared policy: that could grant what its own bundle would
not), and no tenant's failure touches another tenant's slot.

Rollout (``policy.rollout``): ``direct`` activates each new version;
``staged`` makes it the candidate in shadow, and an operator promotes it
(canary, then enforce) or rolls back. A rollback pins the slot: later versions
from the source arrive as shadow candidates until someone promotes one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aegis.bundles.archive import read_archive
from aegis.bundles.errors import BundleError, BundleErrorCode
from aegis.bundles.history import SlotRecord, VersionHistory
from aegis.bundles.layout import Manifest
from aegis.bundles.quiet import QuietLoad
from aegis.bundles.shared import SharedRolloutStore, SharedSlot, SharedStateError
from aegis.bundles.signing import MANIFEST_FILE, PublicKey
from aegis.bundles.sources import BundleSource, BundleSourceError, backoff_delay
from aegis.bundles.tenancy import SHARED, TENANT_ROOT, check_tenant_bundle, unavailable_policy
from aegis.bundles.verify import load_bundle
from aegis.bundles.versions import Slot, Version
from aegis.errors import AegisError, ErrorCode
from aegis.policy.rollout import (
    BASIS_POINTS,
    CanaryBy,
    Candidate,
    Policies,
    RolloutStage,
    TenantPolicy,
)


class RolloutError(AegisError):
    """A promote or rollback that cannot be done (``rollout.*``); nothing changed."""


class ManagerEvents(Protocol):
    """What the gateway wants to hear about (metrics, log, audit)."""

    def reloaded(
        self, tenant: str, result: str, version: Version | None, error: BundleError | None
    ) -> None: ...

    async def activated(
        self, tenant: str, version: Version, how: str, actor: str | None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    poll_seconds: float = 10.0
    backoff_max_seconds: float = 120.0
    keys: Mapping[str, PublicKey] | None = None
    require_signature: bool = False
    scope: str | None = None
    staged: bool = False
    keep_versions: int = 20
    #: Pause the cyclic collector while a reload compiles and freeze the result
    #: (see aegis.bundles.quiet.QuietLoad); for a server process that owns its GC policy.
    quiet_gc: bool = False


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class PolicyManager:
    """Slots, their versions and rollout state; installs snapshots through ``install``."""

    def __init__(
        self,
        sources: Sequence[tuple[str, BundleSource]],
        install: Callable[[Policies], object],
        *,
        config: ManagerConfig | None = None,
        history: VersionHistory | None = None,
        events: ManagerEvents | None = None,
        clock: Callable[[], str] = _now,
        shared: SharedRolloutStore | None = None,
        subtrees: Collection[str] = (),
    ) -> None:
        """``subtrees``: tenants whose source is a bundle of several tenants, of which
        each decides by its own ``tenants/<tenant>`` part."""
        self.config = config or ManagerConfig()
        self.history = history or VersionHistory(None)
        self.events = events
        self._install = install
        self._clock = clock
        self.slots: dict[str, Slot] = {}
        for tenant, source in sources:
            if tenant in self.slots:
                raise ValueError(f"two bundle sources for tenant {tenant or '(shared)'!r}")
            self.slots[tenant] = Slot(tenant, source, subtree=tenant in subtrees)
        if SHARED in subtrees:
            raise ValueError("the shared policy is a whole bundle, not a tenant's part of one")
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._installed: dict[str, str | None] = {}
        self._switching = QuietLoad(self.config.quiet_gc)
        #: The fleet's rollout state (None: this gateway alone decides its state).
        self.shared = shared
        self._shared_rev = 0
        self._shared_seen: dict[str, SharedSlot] = {}
        self.shared_error: str | None = None

    # -- start and stop ------------------------------------------------------------------
    async def start(self, *, poll: bool = True) -> None:
        """Restore saved versions, fetch every source once, install, then poll.

        Raises BundleError when the shared policy has no version at all (neither
        saved nor fetched): there is nothing safe to serve.
        """
        saved = await asyncio.to_thread(self.history.load_state)
        for tenant, slot in self.slots.items():
            record = saved.get(tenant)
            if record is not None:
                await self._restore(slot, record)
        # The fleet's state first (what the other replicas serve), then the sources:
        # a version published since is newer than both and is placed on top.
        await self.sync_shared(install=False)
        errors: dict[str, BundleError] = {}
        for slot in self.slots.values():
            error = await self.poll(slot, install=False)
            if error is not None:
                errors[slot.tenant] = error
        shared = self.slots.get(SHARED)
        if shared is not None and shared.active is None:
            error = errors.get(SHARED) or BundleError(
                BundleErrorCode.SOURCE_UNAVAILABLE, "no version of the shared policy"
            )
            raise error
        await self._commit(how="start")
        if poll:
            self._tasks = [
                asyncio.create_task(self._poll_loop(slot), name=f"bundle-poll:{slot.tenant}")
                for slot in self.slots.values()
                if slot.source is not None
            ]
            if self.shared is not None:
                self._tasks.append(
                    asyncio.create_task(self._shared_loop(), name="bundle-shared-state")
                )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for slot in self.slots.values():
            if slot.source is not None:
                with contextlib.suppress(Exception):
                    await slot.source.aclose()
        if self.shared is not None:
            with contextlib.suppress(Exception):
                await self.shared.close()

    async def _restore(self, slot: Slot, record: SlotRecord) -> None:
        """Saved versions back: the active one and the candidate loaded and verified
        now, the others kept as archives until someone promotes or rolls back to them."""
        serving = {record.active, record.candidate}
        for vid in record.versions:
            data = await asyncio.to_thread(self.history.read_archive, vid)
            if data is None:
                continue
            origin = record.origins.get(vid, "saved")
            try:
                if vid in serving:
                    version = await asyncio.to_thread(self._load, slot.tenant, data, origin)
                    if version.id != vid:
                        continue
                else:
                    manifest = Manifest.parse(read_archive(data).get(MANIFEST_FILE, b""))
                    version = Version(
                        id=vid,
                        revision=record.revisions.get(vid, manifest.revision),
                        policy_version=record.policy_versions.get(vid, ""),
                        rules=record.rules.get(vid, 0),
                        manifest=manifest,
                        archive=data,
                        origin=origin,
                        loaded_at=record.loaded_at.get(vid, ""),
                    )
            except BundleError as exc:  # changed on disk, or a key was withdrawn
                self._report(slot, "failed", None, exc)
                continue
            slot.versions[vid] = dataclasses.replace(
                version, loaded_at=record.loaded_at.get(vid, version.loaded_at)
            )
        known = set(slot.versions)
        slot.record = SlotRecord(
            versions=[v for v in record.versions if v in known],
            activations=[v for v in record.activations if v in known],
            active=record.active if record.active in known else None,
            candidate=record.candidate if record.candidate in known else None,
            stage=record.stage if record.candidate in known else None,
            share_bp=record.share_bp,
            by=record.by,
            pinned=record.pinned,
            revisions={k: v for k, v in record.revisions.items() if k in known},
            loaded_at={k: v for k, v in record.loaded_at.items() if k in known},
            origins={k: v for k, v in record.origins.items() if k in known},
            policy_versions={k: v for k, v in record.policy_versions.items() if k in known},
            rules={k: v for k, v in record.rules.items() if k in known},
        )

    async def _loaded(self, slot: Slot, version: Version) -> Version:
        """``version`` with its compiled policy, loading and verifying its archive
        again if it was let go; RolloutError when it no longer loads."""
        if version.compiled is not None:
            return version
        try:
            again = await asyncio.to_thread(
                self._load, slot.tenant, version.archive, version.origin
            )
        except BundleError as exc:
            raise RolloutError(
                ErrorCode.ROLLOUT_INVALID,
                f"version {version.revision} no longer loads: {exc.code}: {exc.message}",
            ) from None
        if again.id != version.id:
            raise RolloutError(
                ErrorCode.ROLLOUT_INVALID, f"version {version.revision}'s files have changed"
            )
        loaded = dataclasses.replace(version, compiled=again.compiled)
        slot.versions[version.id] = loaded
        return loaded

    def _release(self, slot: Slot) -> None:
        """Drop the compiled policy of every version that neither decides nor shadows."""
        serving = {slot.record.active, slot.record.candidate}
        for vid, version in list(slot.versions.items()):
            if vid not in serving and version.compiled is not None:
                slot.versions[vid] = dataclasses.replace(version, compiled=None)

    # -- polling -------------------------------------------------------------------------
    async def _poll_loop(self, slot: Slot) -> None:
        cfg = self.config
        while True:
            if slot.failures:
                delay = max(
                    cfg.poll_seconds,
                    backoff_delay(
                        slot.failures, base=cfg.poll_seconds, cap=cfg.backoff_max_seconds
                    ),
                )
            else:
                delay = cfg.poll_seconds
            await asyncio.sleep(delay)
            try:
                await self.poll(slot)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one slot's bug stop its polling
                self._report(
                    slot, "failed", None, BundleError(BundleErrorCode.CORRUPT, f"reload: {exc!r}")
                )

    async def poll(self, slot: Slot, *, install: bool = True) -> BundleError | None:
        """Fetch once; load and place a new version. Returns the error, if any."""
        if slot.source is None:
            return None
        slot.last_fetch_at = self._clock()
        try:
            fetched = await slot.source.fetch()
            if fetched.data is None:
                slot.failures = 0
                self._report(slot, "unchanged", None, None)
                return None
            version = await asyncio.to_thread(self._load, slot.tenant, fetched.data, fetched.origin)
        except (BundleError, BundleSourceError) as exc:
            error = exc if isinstance(exc, BundleError) else BundleError(exc.code, exc.message)
            slot.failures += 1
            self._report(slot, "failed", None, error)
            return error
        slot.failures = 0
        slot.last_load_seconds = version.load_seconds
        async with self._lock:
            result = self._accept(slot, version)
            self._report(slot, result, version, None)
            if install and result != "unchanged":
                await self._commit(how="reload")
        return None

    def _load(self, tenant: str, data: bytes, origin: str) -> Version:
        cfg = self.config
        started = time.perf_counter()
        subtree = self.slots[tenant].subtree
        with self._switching:
            bundle = load_bundle(
                data,
                keys=cfg.keys,
                require_signature=cfg.require_signature,
                scope=cfg.scope,
                subtree=f"{TENANT_ROOT}/{tenant}" if subtree else None,
            )
        if tenant != SHARED:
            check_tenant_bundle(tenant, bundle, shared_bundle=subtree)
        policy = bundle.compiled_policy
        return Version(
            id=policy.bundle_hash,
            revision=bundle.manifest.revision or policy.version,
            policy_version=policy.version,
            rules=len(policy.rules),
            manifest=bundle.manifest,
            archive=data,
            origin=origin,
            loaded_at=self._clock(),
            compiled=policy,
            load_seconds=time.perf_counter() - started,
        )

    def _accept(self, slot: Slot, version: Version) -> str:
        """Place a freshly loaded version; return the reload result."""
        record = slot.record
        if version.id in (record.active, record.candidate):
            return "unchanged"
        if record.pinned and version.id in record.versions:
            # Rolled back from: a replica meeting it at its source for the first
            # time must not bring it back, not even as a candidate.
            return "unchanged"
        self._remember(slot, version)
        if record.active is not None and (self.config.staged or record.pinned):
            record.candidate, record.stage, record.share_bp = version.id, "shadow", 0
            return "candidate"
        # Direct rollout -- or the slot's first version: nothing else could serve.
        self._activate(slot, version.id)
        return "activated"

    def _remember(self, slot: Slot, version: Version) -> None:
        record = slot.record
        slot.versions[version.id] = version
        if version.id in record.versions:
            record.versions.remove(version.id)
        record.versions.append(version.id)
        record.revisions[version.id] = version.revision
        record.policy_versions[version.id] = version.policy_version
        record.rules[version.id] = version.rules
        record.loaded_at[version.id] = version.loaded_at
        record.origins[version.id] = version.origin
        self.history.save_archive(version.id, version.archive)
        keep = max(2, self.config.keep_versions)
        protected = {record.active, record.candidate}
        while len(record.versions) > keep:
            oldest = next((v for v in record.versions if v not in protected), None)
            if oldest is None:
                break
            record.versions.remove(oldest)
            record.activations = [v for v in record.activations if v != oldest]
            slot.versions.pop(oldest, None)
            for table in (record.revisions, record.loaded_at, record.origins):
                table.pop(oldest, None)
            record.policy_versions.pop(oldest, None)
            record.rules.pop(oldest, None)
            if not any(oldest in s.record.versions for s in self.slots.values()):
                self.history.drop_archive(oldest)

    def _activate(self, slot: Slot, version_id: str) -> None:
        record = slot.record
        record.active = version_id
        record.activations.append(version_id)
        if record.candidate == version_id:
            record.candidate, record.stage, record.share_bp = None, None, 0

    def _report(
        self, slot: Slot, result: str, version: Version | None, error: BundleError | None
    ) -> None:
        slot.counts[result] = slot.counts.get(result, 0) + 1
        if error is not None:
            slot.last_error = {
                "code": str(error.code),
                "message": error.message,
                "at": self._clock(),
            }
        if self.events is not None:
            self.events.reloaded(slot.tenant, result, version, error)

    # -- snapshots -----------------------------------------------------------------------
    def snapshot(self) -> Policies:
        shared_slot = self.slots.get(SHARED)
        shared = self._tenant_policy(shared_slot) if shared_slot is not None else None
        if shared is None:
            raise BundleError(BundleErrorCode.SOURCE_UNAVAILABLE, "no shared policy configured")
        tenants = {
            tenant: self._tenant_policy(slot)
            for tenant, slot in self.slots.items()
            if tenant != SHARED
        }
        return Policies(shared, tenants)

    def _tenant_policy(self, slot: Slot) -> TenantPolicy:
        active = slot.active
        if active is None:
            if slot.unavailable is None:
                why = slot.last_error["message"] if slot.last_error else "not loaded yet"
                slot.unavailable = unavailable_policy(slot.tenant, why)
            return TenantPolicy(slot.unavailable)
        candidate = slot.candidate
        if candidate is None or slot.record.stage is None:
            return TenantPolicy(active.policy)
        return TenantPolicy(
            active.policy,
            Candidate(
                candidate.policy,
                RolloutStage(slot.record.stage),
                share_bp=slot.record.share_bp,
                by=CanaryBy(slot.record.by),
            ),
        )

    async def _commit_operation(
        self, slot: Slot, before: SlotRecord, *, how: str, actor: str | None
    ) -> None:
        """An operator's change: in the fleet's state first, then here. When the
        shared store refuses it (unreachable, or another replica changed the state
        meanwhile), nothing changes here either and the caller is told."""
        if self.shared is not None:
            error = await self._publish()
            if error is not None:
                slot.record = before
                raise RolloutError(ErrorCode.ROLLOUT_INVALID, error)
        await self._commit(how=how, actor=actor, publish=False)

    async def _commit(self, *, how: str, actor: str | None = None, publish: bool = True) -> None:
        """Install the snapshot, persist state, tell listeners what became active."""
        if publish and how != "sync":
            await self._publish()  # best effort: a lost race is settled by the next sync
        before = self._installed
        self._install(self.snapshot())
        for slot in self.slots.values():
            self._release(slot)
        self._installed = {t: s.record.active for t, s in self.slots.items()}
        await asyncio.to_thread(
            self.history.save_state, {t: s.record for t, s in self.slots.items()}
        )
        if self.events is None:
            return
        for t, slot in self.slots.items():
            active = slot.active
            if active is not None and before.get(t) != active.id:
                await self.events.activated(t, active, how, actor)

    # -- the fleet's state (shared between replicas) ---------------------------------------
    @staticmethod
    def _shared_view(slot: Slot) -> SharedSlot:
        r = slot.record
        return SharedSlot(r.active, r.candidate, r.stage, r.share_bp, r.by, r.pinned)

    async def _publish(self) -> str | None:
        """Write the slots whose state differs from the fleet's; None when done (or
        nothing to do), else why not."""
        if self.shared is None:
            return None
        changed = {
            t: view
            for t, slot in self.slots.items()
            if (view := self._shared_view(slot)) != self._shared_seen.get(t)
        }
        if not changed:
            return None
        archives = {
            vid: self.slots[t].versions[vid].archive
            for t, view in changed.items()
            for vid in (view.active, view.candidate)
            if vid is not None and vid in self.slots[t].versions
        }
        try:
            revision = await self.shared.write(self._shared_rev, changed, archives)
        except SharedStateError as exc:
            self.shared_error = str(exc)
            return f"the shared rollout state cannot be written: {exc}"
        if revision is None:
            return "another gateway changed the rollout state at the same time; check and retry"
        self._shared_rev = revision
        self._shared_seen.update(changed)
        self.shared_error = None
        return None

    async def sync_shared(self, *, install: bool = True) -> bool:
        """Apply what other replicas changed since the last read; True if anything did."""
        if self.shared is None:
            return False
        try:
            revision, slots = await self.shared.read()
        except SharedStateError as exc:
            self.shared_error = str(exc)  # keep serving this replica's own state
            return False
        self.shared_error = None
        if revision == self._shared_rev:
            return False
        changed = False
        async with self._lock:
            for tenant, desired in slots.items():
                slot = self.slots.get(tenant)
                if slot is None or self._shared_view(slot) == desired:
                    continue
                try:
                    await self._apply_shared(slot, desired)
                except BundleError as exc:  # a named archive missing or not verifying
                    self._report(slot, "failed", None, exc)
                    continue
                changed = True
            self._shared_rev, self._shared_seen = revision, dict(slots)
            if changed and install:
                await self._commit(how="sync")
        return changed

    async def _apply_shared(self, slot: Slot, desired: SharedSlot) -> None:
        assert self.shared is not None
        for vid in (desired.active, desired.candidate):
            if vid is None:
                continue
            known = slot.versions.get(vid)
            if known is None:  # published by another replica before this one saw it
                data = await self.shared.archive(vid)
                if data is None:
                    raise BundleError(
                        BundleErrorCode.SOURCE_UNAVAILABLE,
                        f"the shared rollout state names {vid} but holds no archive of it",
                    )
                version = await asyncio.to_thread(self._load, slot.tenant, data, "shared")
                if version.id != vid:
                    raise BundleError(
                        BundleErrorCode.FILE_MISMATCH, f"the shared archive of {vid} is not it"
                    )
                self._remember(slot, version)
            elif known.compiled is None:
                try:
                    await self._loaded(slot, known)
                except RolloutError as exc:
                    raise BundleError(BundleErrorCode.FILE_MISMATCH, exc.message) from None
        record = slot.record
        if desired.active is not None and desired.active != record.active:
            record.active = desired.active
            record.activations.append(desired.active)
        record.candidate, record.stage = desired.candidate, desired.stage
        record.share_bp, record.by, record.pinned = desired.share_bp, desired.by, desired.pinned

    async def _shared_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_seconds)
            try:
                await self.sync_shared()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let a bug stop the loop
                self.shared_error = f"sync: {exc!r}"

    # -- operations (control API and CLI) -------------------------------------------------
    def _slot(self, tenant: str) -> Slot:
        slot = self.slots.get(tenant)
        if slot is None:
            raise RolloutError(
                ErrorCode.ROLLOUT_UNKNOWN_TENANT,
                f"no bundle is configured for tenant {tenant or '(shared)'!r}",
            )
        return slot

    def _version(self, slot: Slot, ref: str | None) -> Version:
        if ref is None:
            candidate = slot.candidate
            if candidate is None:
                raise RolloutError(
                    ErrorCode.ROLLOUT_INVALID, "there is no candidate version to promote; name one"
                )
            return candidate
        matches = [
            v
            for v in slot.versions.values()
            if ref in (v.id, v.revision, v.policy_version)
            or (len(ref) >= 12 and v.id.removeprefix("sha256:").startswith(ref))
        ]
        if len(matches) != 1:
            known = ", ".join(f"{v.revision} ({v.id[7:19]})" for v in slot.versions.values())
            raise RolloutError(
                ErrorCode.ROLLOUT_UNKNOWN_VERSION,
                f"{'no' if not matches else 'more than one'} version matches {ref!r}; "
                f"known: {known or 'none'}",
            )
        return matches[0]

    async def promote(
        self,
        tenant: str,
        stage: str,
        *,
        version: str | None = None,
        percent: float | None = None,
        by: str = "agent",
        actor: str | None = None,
    ) -> dict[str, Any]:
        """shadow | canary (with ``percent``) | enforce, for the candidate or a named version."""
        await self.sync_shared()  # act on what the fleet serves now
        async with self._lock:
            slot = self._slot(tenant)
            target = await self._loaded(slot, self._version(slot, version))
            record = slot.record
            before = SlotRecord.from_dict(record.to_dict())
            if stage == "enforce":
                self._activate(slot, target.id)
                record.pinned = False
            elif stage in ("shadow", "canary"):
                if target.id == record.active:
                    raise RolloutError(
                        ErrorCode.ROLLOUT_INVALID,
                        f"{target.revision} is already the active version",
                    )
                share = 0
                if stage == "canary":
                    if percent is None or not 0 < percent <= 100:
                        raise RolloutError(
                            ErrorCode.ROLLOUT_INVALID, "canary needs --percent in (0, 100]"
                        )
                    share = round(percent * BASIS_POINTS / 100)
                if by not in ("agent", "call"):
                    raise RolloutError(
                        ErrorCode.ROLLOUT_INVALID, "canary share is by agent or call"
                    )
                record.candidate, record.stage = target.id, stage
                record.share_bp, record.by = share, by
            else:
                raise RolloutError(
                    ErrorCode.ROLLOUT_INVALID,
                    f"stage must be shadow, canary or enforce, not {stage!r}",
                )
            await self._commit_operation(slot, before, how=f"promote:{stage}", actor=actor)
            return self.slot_status(slot)

    async def rollback(
        self, tenant: str, *, to: str | None = None, actor: str | None = None
    ) -> dict[str, Any]:
        """Make an earlier version active (by default the one before the current),
        drop any candidate, and pin the slot against automatic activation."""
        await self.sync_shared()
        async with self._lock:
            slot = self._slot(tenant)
            record = slot.record
            before = SlotRecord.from_dict(record.to_dict())
            if to is None:
                earlier = [v for v in reversed(record.activations) if v != record.active]
                if not earlier:
                    raise RolloutError(
                        ErrorCode.ROLLOUT_INVALID, "there is no earlier version to roll back to"
                    )
                target = slot.versions[earlier[0]]
            else:
                target = self._version(slot, to)
            target = await self._loaded(slot, target)
            record.active = target.id
            record.activations.append(target.id)
            record.candidate, record.stage, record.share_bp = None, None, 0
            record.pinned = True
            await self._commit_operation(slot, before, how="rollback", actor=actor)
            return self.slot_status(slot)

    # -- status --------------------------------------------------------------------------
    def slot_status(self, slot: Slot) -> dict[str, Any]:
        record = slot.record
        active, candidate = slot.active, slot.candidate
        return {
            "tenant": slot.tenant,
            "source": slot.source.name if slot.source is not None else None,
            "active": active.summary() if active else None,
            "candidate": (
                {
                    **candidate.summary(),
                    "stage": record.stage,
                    "percent": record.share_bp * 100 / BASIS_POINTS,
                    "by": record.by,
                }
                if candidate
                else None
            ),
            "pinned": record.pinned,
            "versions": [slot.versions[v].summary() for v in record.versions if v in slot.versions],
            "reloads": dict(slot.counts),
            "consecutive_failures": slot.failures,
            "last_error": slot.last_error,
            "last_fetch_at": slot.last_fetch_at,
            "last_load_seconds": (
                None if slot.last_load_seconds is None else round(slot.last_load_seconds, 4)
            ),
            "shared": (
                None
                if self.shared is None
                else {"revision": self._shared_rev, "error": self.shared_error}
            ),
        }

    def status(self, tenants: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return [
            self.slot_status(slot)
            for tenant, slot in sorted(self.slots.items())
            if tenants is None or tenant in tenants
        ]
