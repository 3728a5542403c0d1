"""The two shapes of an Aegis object: sync and async, each in-process or over HTTP.

================  ==================  ====================
                  in-process          decision API (HTTP)
================  ==================  ====================
sync              LocalAegis          AegisClient
async             AsyncLocalAegis     AsyncAegisClient
================  ==================  ====================

``decide`` answers every decided outcome with a Decision; ``check`` raises
:class:`~aegis.sdk.errors.PolicyViolation` unless the call is permitted.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Protocol, TypeAlias, TypeGuard

from aegis.core.decision import Decision
from aegis.sdk.wire import CallLike


class SyncAegis(Protocol):
    def decide(self, call: CallLike) -> Decision: ...

    def decide_batch(self, calls: Sequence[CallLike]) -> list[Decision]: ...

    def check(self, call: CallLike) -> Decision: ...


class AsyncAegis(Protocol):
    async def decide(self, call: CallLike) -> Decision: ...

    async def decide_batch(self, calls: Sequence[CallLike]) -> list[Decision]: ...

    async def check(self, call: CallLike) -> Decision: ...


AnyAegis: TypeAlias = SyncAegis | AsyncAegis


def is_async_aegis(aegis: AnyAegis) -> TypeGuard[AsyncAegis]:
    """True when ``aegis.decide`` is a coroutine function (the async shapes)."""
    return inspect.iscoroutinefunction(aegis.decide)
