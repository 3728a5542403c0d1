"""The policy the pipeline decides with, swappable atomically.

A decision reads ``store.current`` once and uses that object throughout, so a
swap in the middle of a call never mixes two versions: the call finishes on
the policy it started with. Assigning one attribute is atomic in CPython, and
the event loop runs one coroutine step at a time.
"""

from __future__ import annotations

from aegis.policy.compiled import CompiledPolicy


class PolicyStore:
    def __init__(self, policy: CompiledPolicy) -> None:
        self._current = policy
        self.swaps = 0

    @property
    def current(self) -> CompiledPolicy:
        return self._current

    def swap(self, policy: CompiledPolicy) -> CompiledPolicy:
        """Install ``policy``; return the one it replaces."""
        previous, self._current = self._current, policy
        self.swaps += 1
        return previous
