"""Stage doubles for fail-mode tests, shipped so every door's tests use the same ones.

DESIGN.md §6's matrix is {core ok, raising, slow past its timeout, store
unavailable} x {fail-closed, fail-open}; :data:`FAILURES` names the last three
as stages to put in a pipeline's ``limits`` slot, with the error each causes.
"""

from __future__ import annotations

import asyncio

from aegis.core.call import ToolCall
from aegis.errors import ErrorCode
from aegis.pipeline import Pipeline, PolicyStore, Refusal, StoreUnavailableError
from aegis.pipeline.stages import EvidenceSink
from aegis.policy.compiled import CompiledPolicy


class RaisingStage:
    async def check(self, call: ToolCall, policy: CompiledPolicy) -> Refusal | None:
        raise RuntimeError("stage exploded")


class SlowStage:
    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds

    async def check(self, call: ToolCall, policy: CompiledPolicy) -> Refusal | None:
        await asyncio.sleep(self.seconds)
        return None


class StoreDownStage:
    async def check(self, call: ToolCall, policy: CompiledPolicy) -> Refusal | None:
        raise StoreUnavailableError("store: connection refused")


class LimitedStage:
    def __init__(self, retry_after: float = 30.0) -> None:
        self.retry_after = retry_after

    async def check(self, call: ToolCall, policy: CompiledPolicy) -> Refusal | None:
        return Refusal(ErrorCode.DECISION_LIMIT_EXCEEDED, "rate limit exceeded", self.retry_after)


FAILURES: dict[str, tuple[type[object], ErrorCode]] = {
    "raising": (RaisingStage, ErrorCode.PIPELINE_INTERNAL_ERROR),
    "slow": (SlowStage, ErrorCode.PIPELINE_TIMEOUT),
    "store_down": (StoreDownStage, ErrorCode.PIPELINE_STORE_UNAVAILABLE),
}


def pipeline_with(
    policy: CompiledPolicy | PolicyStore,
    failure: str | None = None,
    *,
    evidence: EvidenceSink | None = None,
    timeout: float = 0.05,
) -> Pipeline:
    """A default pipeline, optionally with one of FAILURES in its limits stage."""
    pipeline = Pipeline.with_defaults(policy, evidence=evidence, timeout=timeout)
    if failure is not None:
        stage_cls, _ = FAILURES[failure]
        pipeline.limits = stage_cls()  # type: ignore[assignment]
    return pipeline
