"""The policies the pipeline decides with, swappable atomically.

The store holds one immutable :class:`~aegis.policy.rollout.Policies` snapshot
(the shared policy, each tenant's own, candidates in rollout). A decision reads
``store.policies`` once and uses that snapshot throughout, so a swap in the
middle of a call never mixes two versions: the call finishes on the snapshot it
started with. Assigning one attribute is atomic in CPython, and the event loop
runs one coroutine step at a time.
"""

from __future__ import annotations

from aegis.policy.compiled import CompiledPolicy
from aegis.policy.rollout import Policies, TenantPolicy


class PolicyStore:
    def __init__(self, policy: CompiledPolicy | Policies) -> None:
        self._policies = policy if isinstance(policy, Policies) else Policies.single(policy)
        self.swaps = 0

    @property
    def policies(self) -> Policies:
        return self._policies

    @property
    def current(self) -> CompiledPolicy:
        """The shared policy's active version (tenants without their own use it)."""
        return self._policies.shared.active

    def for_tenant(self, tenant: str) -> CompiledPolicy:
        """The active version deciding ``tenant``'s calls."""
        return self._policies.route(tenant).active

    def swap(self, policy: CompiledPolicy) -> CompiledPolicy:
        """Install ``policy`` as the shared policy (tenants' own are kept); return
        the one it replaces."""
        previous = self._policies.shared.active
        self.install(Policies(TenantPolicy(policy), self._policies.tenants))
        return previous

    def install(self, policies: Policies) -> Policies:
        """Install a whole snapshot; return the one it replaces."""
        previous, self._policies = self._policies, policies
        self.swaps += 1
        return previous
