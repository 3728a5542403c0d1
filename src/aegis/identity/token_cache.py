"""A bounded LRU of verified tokens, so signature checks stay off the hot path.

Keyed by the exact token string: a hit means these very bytes were verified
before. An entry lives until the token expires (plus leeway) or is evicted as
least recently used. Revocation is *not* cached here: the kill switch is asked
on every call, cache hit or not (DESIGN.md §5, §6).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["CacheStats", "VerifiedCache"]

T = TypeVar("T")


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expired: int = 0


class VerifiedCache(Generic[T]):
    """``token → (value, expires_at)``; ``get`` drops an entry whose time has passed."""

    def __init__(self, max_size: int) -> None:
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        self._max_size = max_size
        self._entries: OrderedDict[str, tuple[T, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def get(self, token: str, now: float) -> tuple[T, float] | None:
        """The cached value and its expiry, or None (miss, or expired and dropped)."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                self.stats.misses += 1
                return None
            if now >= entry[1]:
                del self._entries[token]
                self.stats.expired += 1
                return None
            self._entries.move_to_end(token)
            self.stats.hits += 1
            return entry

    def put(self, token: str, value: T, expires_at: float) -> None:
        if self._max_size == 0:
            return
        with self._lock:
            self._entries[token] = (value, expires_at)
            self._entries.move_to_end(token)
            while len(self._entries) > self._max_size:
                self._entries.popitem(last=False)
                self.stats.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, token: object) -> bool:
        return token in self._entries
