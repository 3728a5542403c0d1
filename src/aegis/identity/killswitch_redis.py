"""Kill switch state shared by gateway replicas through Redis.

Layout (``prefix`` defaults to ``aegis:ks``):

* ``{prefix}:active`` -- a hash, revocation id -> JSON: the active set, read whole
  at start and after every reconnect (cold start);
* ``{prefix}:actions`` -- a list of action JSON, oldest first: the trail;
* ``{prefix}:events`` -- the pub/sub channel every replica subscribes to.

:meth:`RedisRevocationStore.apply` changes the hash, appends to the trail and
publishes the action in one ``MULTI``/``EXEC`` transaction, so a subscriber never
hears of an action the hash does not hold (https://redis.io/docs/latest/develop/interact/transactions/).

Bounded staleness
    Pub/sub is at-most-once: a message published while a subscriber is
    disconnected is lost to it (https://redis.io/docs/latest/develop/interact/pubsub/).
    So on every (re)connect the listener first subscribes, waits for Redis to
    confirm the subscription, and only then reloads the whole hash -- an action
    published in between is seen twice (applied idempotently), never zero times.
    While connected, an action is in force in every replica after one pub/sub
    delivery (milliseconds; ``benchmarks/killswitch`` measures it). The listener
    pings every ``ping_interval`` seconds and treats ``3 * ping_interval`` without
    any reply as a lost connection, so a silently dead link is noticed within
    that bound; a closed one at once. From then until the reload after the
    reconnect, :attr:`out_of_sync_since` holds the last moment the replica was
    known current, and a ``KillSwitch(max_staleness=...)`` turns a longer gap
    into StoreUnavailableError for the pipeline's fail mode. Reconnects back off
    from 50 ms to ``max_backoff``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aegis.identity.killswitch import (
    ActionKind,
    KillSwitchAction,
    KillSwitchStoreError,
    Revocation,
    StoreListener,
)

log = logging.getLogger(__name__)

_FIRST_BACKOFF = 0.05


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


class RedisRevocationStore:
    """:class:`aegis.identity.killswitch.RevocationStore` on Redis; one per process."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "aegis:ks",
        ping_interval: float = 1.0,
        max_backoff: float = 1.0,
        startup_timeout: float = 5.0,
        client_name: str | None = None,
    ) -> None:
        self._client: Redis = Redis.from_url(
            url, socket_connect_timeout=2.0, socket_timeout=5.0, client_name=client_name
        )
        self.prefix = prefix
        self._active_key = f"{prefix}:active"
        self._actions_key = f"{prefix}:actions"
        self.channel = f"{prefix}:events"
        self._ping_interval = ping_interval
        self._max_backoff = max_backoff
        self._startup_timeout = startup_timeout
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._closing = False
        self.out_of_sync_since: float | None = time.monotonic()
        self._last_seen = self.out_of_sync_since  # the last reply from Redis (monotonic)
        self.reconnects = 0  # times the listener had to reconnect (tests, diagnostics)
        self.bad_messages = 0  # undecodable messages on the channel, ignored

    async def apply(self, action: KillSwitchAction) -> None:
        text = _dumps(action.to_dict())
        rev = action.revocation
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                if action.action is ActionKind.RESUME:
                    pipe.hdel(self._active_key, rev.id)
                else:
                    pipe.hset(self._active_key, rev.id, _dumps(rev.to_dict()))
                pipe.rpush(self._actions_key, text)
                pipe.publish(self.channel, text)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise KillSwitchStoreError(f"redis kill switch store: {exc}") from exc

    async def active(self) -> list[Revocation]:
        try:
            raw = await self._client.hgetall(self._active_key)
        except (RedisError, OSError) as exc:
            raise KillSwitchStoreError(f"redis kill switch store: {exc}") from exc
        return [Revocation.from_dict(json.loads(v)) for v in raw.values()]

    async def actions(self, tenant: str) -> list[KillSwitchAction]:
        try:
            raw = await self._client.lrange(self._actions_key, 0, -1)
        except (RedisError, OSError) as exc:
            raise KillSwitchStoreError(f"redis kill switch store: {exc}") from exc
        trail = (KillSwitchAction.from_dict(json.loads(r)) for r in raw)
        return [a for a in trail if a.tenant == tenant]

    # -- the listener ----------------------------------------------------------------

    async def subscribe(self, listener: StoreListener) -> None:
        if self._task is not None:
            raise RuntimeError("this store already feeds a kill switch; use one store each")
        self._task = asyncio.create_task(self._listen(listener), name="aegis-killswitch-redis")
        try:
            await asyncio.wait_for(self._synced.wait(), self._startup_timeout)
        except TimeoutError:
            await self.close()
            raise KillSwitchStoreError(
                f"redis kill switch store: no snapshot within {self._startup_timeout}s"
            ) from None

    async def _listen(self, listener: StoreListener) -> None:
        backoff = _FIRST_BACKOFF
        while not self._closing:
            try:
                await self._session(listener)
            except (RedisError, OSError, TimeoutError, KillSwitchStoreError) as exc:
                self._lost()
                log.warning("kill switch: Redis subscription lost (%s); reconnecting", exc)
            except Exception:  # a bug must not end the subscription for good
                self._lost()
                log.exception("kill switch: Redis listener failed; reconnecting")
            if self._closing:
                return
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def _lost(self) -> None:
        if self.out_of_sync_since is None:
            self.out_of_sync_since = self._last_seen

    async def _session(self, listener: StoreListener) -> None:
        """One connection's life: subscribe, reload, then deliver until it fails."""
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            deadline = time.monotonic() + self._startup_timeout
            while True:  # the subscribe confirmation: from here on, nothing is missed
                msg = await pubsub.get_message(timeout=0.5)
                if msg is not None and msg["type"] == "subscribe":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("no subscribe confirmation from Redis")
            listener.on_snapshot(await self.active())
            self._last_seen = time.monotonic()
            self.out_of_sync_since = None
            self._synced.set()
            next_ping = self._last_seen + self._ping_interval
            while not self._closing:
                msg = await pubsub.get_message(timeout=self._ping_interval)
                now = time.monotonic()
                if msg is not None:
                    self._last_seen = now
                    if msg["type"] == "message":
                        self._deliver(listener, msg["data"])
                if now >= next_ping:
                    await pubsub.ping()
                    next_ping = now + self._ping_interval
                if now - self._last_seen > 3 * self._ping_interval:
                    raise TimeoutError(f"no reply from Redis for {now - self._last_seen:.1f}s")
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _deliver(self, listener: StoreListener, data: bytes) -> None:
        try:
            action = KillSwitchAction.from_dict(json.loads(data))
        except (ValueError, KeyError, TypeError):
            self.bad_messages += 1
            log.warning("kill switch: ignored an undecodable message on %s", self.channel)
            return
        listener.on_event(action)

    # -- housekeeping ----------------------------------------------------------------

    async def delete_all(self) -> None:
        """Remove this prefix's keys (tests; never called by the gateway)."""
        await self._client.delete(self._active_key, self._actions_key)

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()
