"""In-process mode: the real pipeline embedded in the agent's process, no network.

:class:`LocalAegis` (sync) and :class:`AsyncLocalAegis` (asyncio) have the
clients' interface -- ``decide``, ``decide_batch``, ``check`` -- and run the
same :class:`~aegis.pipeline.Pipeline` every door runs, with its working
defaults (no identity check, no shared limits, in-memory approval tickets,
no evidence unless ``evidence=`` is given). A call is validated by
``parse_call`` first, exactly as the HTTP client does, so both modes refuse the
same calls and decide the rest the same way.

"Could not decide" is handled inside the pipeline by the *policy's* fail mode
(closed, or open for declared reads); the answer is then a Decision with code
``decision.fail_closed`` / ``decision.fail_open``, as the decision API returns.

The sync class runs the pipeline's coroutines on one private event-loop thread,
started on first use and stopped by :meth:`LocalAegis.close` (or when the object
is collected). That works from plain threads and from inside a running event
loop alike; async code should still prefer :class:`AsyncLocalAegis`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeAlias, TypeVar

from aegis.core.decision import Decision
from aegis.pipeline import EvidenceSink, Pipeline, RequestContext
from aegis.policy import CompiledPolicy, load_policy
from aegis.sdk.errors import raise_for_decision
from aegis.sdk.wire import CallLike, validate_call

_T = TypeVar("_T")

PathLike: TypeAlias = str | os.PathLike[str]
#: Policy files or folders, a compiled policy, or a whole pipeline to embed.
PolicySource: TypeAlias = CompiledPolicy | PathLike | Sequence[PathLike] | Pipeline


def compile_policy(source: CompiledPolicy | PathLike | Sequence[PathLike]) -> CompiledPolicy:
    """A compiled policy from files/folders (raises PolicyLoadError) or as given."""
    if isinstance(source, CompiledPolicy):
        return source
    paths = [source] if isinstance(source, str | os.PathLike) else list(source)
    return load_policy([Path(p) for p in paths])


def build_pipeline(
    source: PolicySource,
    *,
    clock: Callable[[], datetime] | None = None,
    timeout: float | None = 0.25,
    evidence: EvidenceSink | None = None,
) -> Pipeline:
    if isinstance(source, Pipeline):
        return source
    policy = compile_policy(source)
    if clock is None:
        return Pipeline.with_defaults(policy, evidence=evidence, timeout=timeout)
    return Pipeline.with_defaults(policy, evidence=evidence, timeout=timeout, clock=clock)


class _LocalCore:
    def __init__(
        self,
        policy: PolicySource,
        *,
        clock: Callable[[], datetime] | None = None,
        timeout: float | None = 0.25,
        evidence: EvidenceSink | None = None,
        credentials: str | None = None,
    ) -> None:
        """``policy``: policy files/folders, a CompiledPolicy, or a Pipeline to use as is
        (then ``clock``, ``timeout`` and ``evidence`` are the pipeline's own).
        ``credentials`` reach the identity stage as a door's bearer token would."""
        self.pipeline = build_pipeline(policy, clock=clock, timeout=timeout, evidence=evidence)
        self._ctx = RequestContext(door="sdk", credentials=credentials)

    @property
    def policy(self) -> CompiledPolicy:
        """The policy decisions are made with now."""
        return self.pipeline.policy.current

    def reload(self, policy: CompiledPolicy | PathLike | Sequence[PathLike]) -> CompiledPolicy:
        """Swap in a new policy atomically (calls in flight finish on the old one);
        returns the one replaced. A policy that does not compile raises and changes nothing."""
        return self.pipeline.policy.swap(compile_policy(policy))

    async def _decide(self, call: CallLike) -> Decision:
        checked = validate_call(call)
        return (await self.pipeline.decide(checked, self._ctx)).decision

    async def _decide_batch(self, calls: Sequence[CallLike]) -> list[Decision]:
        checked = [validate_call(c, f"calls[{i}]") for i, c in enumerate(calls)]
        return [(await self.pipeline.decide(c, self._ctx)).decision for c in checked]


class AsyncLocalAegis(_LocalCore):
    """The engine in-process, for asyncio code: ``await aegis.decide(call)``."""

    async def decide(self, call: CallLike) -> Decision:
        return await self._decide(call)

    async def decide_batch(self, calls: Sequence[CallLike]) -> list[Decision]:
        return await self._decide_batch(calls)

    async def check(self, call: CallLike) -> Decision:
        """``decide``, raising PolicyViolation unless the call is permitted."""
        return raise_for_decision(await self._decide(call))

    async def aclose(self) -> None:
        """Nothing to release; here so both async modes close the same way."""


class LocalAegis(_LocalCore):
    """The engine in-process, for synchronous code: ``aegis.decide(call)``."""

    def __init__(
        self,
        policy: PolicySource,
        *,
        clock: Callable[[], datetime] | None = None,
        timeout: float | None = 0.25,
        evidence: EvidenceSink | None = None,
        credentials: str | None = None,
    ) -> None:
        super().__init__(
            policy, clock=clock, timeout=timeout, evidence=evidence, credentials=credentials
        )
        self._runner = _LoopThread()
        # Stop the loop thread when this object goes away without close().
        self._finalizer = weakref.finalize(self, self._runner.stop)

    def decide(self, call: CallLike) -> Decision:
        return self._runner.run(self._decide(call))

    def decide_batch(self, calls: Sequence[CallLike]) -> list[Decision]:
        return self._runner.run(self._decide_batch(calls))

    def check(self, call: CallLike) -> Decision:
        """``decide``, raising PolicyViolation unless the call is permitted."""
        return raise_for_decision(self.decide(call))

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _LoopThread:
    """One event loop on one daemon thread, started on first use.

    A loop per calling thread would leak a selector per thread; ``asyncio.run``
    per call costs a loop per call and fails inside a running loop. One thread
    has neither problem.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        loop = self._start()
        if loop is None or threading.current_thread() is self._thread:
            coro.close()
            if loop is None:
                raise RuntimeError("this LocalAegis is closed")
            # Waiting on our own loop from inside it would never return.
            raise RuntimeError("LocalAegis called from its own loop thread; use AsyncLocalAegis")
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result()

    def _start(self) -> asyncio.AbstractEventLoop | None:
        with self._lock:
            if self._stopped:
                return None
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_serve, args=(loop,), name="aegis-local", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join()
            loop.close()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()
