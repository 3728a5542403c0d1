"""Kill switch fixtures (imported by the kill switch tests): memory and Redis stores.

Every replica a test opens is a separate KillSwitch with its own store (Redis:
its own connections, as another gateway process would have). Redis tests use the
server on 127.0.0.1:6379 for real, under a key prefix unique to the test; they
skip (saying what to start) when it does not answer, and fail under CI=true.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aegis.identity.killswitch import KillSwitch, MemoryRevocationStore
from services import REDIS_URL, require_redis


class SwitchFactory:
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.run_id = uuid.uuid4().hex[:12]
        self.prefix = f"aegis:test:ks:{self.run_id}"
        self.memory = MemoryRevocationStore()
        self.opened: list[KillSwitch] = []
        self.stores: list[Any] = []  # the store of each opened replica, in order

    def store(self, n: int = 0) -> Any:
        if self.backend == "memory":
            return self.memory
        from aegis.identity.killswitch_redis import RedisRevocationStore

        return RedisRevocationStore(
            REDIS_URL,
            prefix=self.prefix,
            ping_interval=0.2,
            max_backoff=0.2,
            client_name=f"aegis-test-{self.run_id}-{n}",
        )

    async def open(self, **kw: Any) -> KillSwitch:
        store = self.store(len(self.opened))
        self.stores.append(store)
        ks = await KillSwitch(store, **kw).start()
        self.opened.append(ks)
        return ks

    async def close_all(self) -> None:
        for ks in self.opened:
            await ks.close()
        self.opened.clear()

    async def settle(self, predicate: Callable[[], bool], timeout: float = 3.0) -> float:
        """Wait (bounded) until ``predicate()`` holds; the seconds it took."""
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout:
                raise AssertionError(f"not settled within {timeout}s")
            await asyncio.sleep(0.001)
        return time.monotonic() - start

    def cleanup(self) -> None:
        if self.backend != "redis":
            return
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{self.prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(name="switches", params=["memory", "redis"])
def switches_fixture(request: pytest.FixtureRequest) -> Iterator[SwitchFactory]:
    backend = str(request.param)
    if backend == "redis":
        require_redis()
    factory = SwitchFactory(backend)
    try:
        yield factory
    finally:
        factory.cleanup()
