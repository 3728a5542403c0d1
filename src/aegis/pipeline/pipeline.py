"""The pipeline: one ToolCall in, one Decision out, the same for every door.

Stages run in DESIGN.md §2's order -- identity, kill switch, chain, limits,
policy, approvals -- then evidence. "Could not decide" (a timeout, a store
that is down, a bug) is kept apart from "deny": the policy's fail mode for the
call turns it into the answer (closed, or open for declared reads only), and
the result carries both, so evidence records what happened and what was done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from aegis.core.call import ToolCall, ToolKind
from aegis.core.decision import Decision, FailMode, Outcome, new_decision_id
from aegis.errors import ErrorCode
from aegis.pipeline.policy_store import PolicyStore
from aegis.pipeline.stages import (
    AllowAllIdentity,
    ApprovalStage,
    AuditStage,
    ChainStage,
    EvidenceSink,
    IdentityStage,
    InMemoryApprovals,
    KillSwitchStage,
    LimitStage,
    NoChainCheck,
    NoKillSwitch,
    NoLimits,
    NullEvidence,
    PipelineResult,
    Refusal,
    RequestContext,
    StoreUnavailableError,
    TraceRefs,
)
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.engine import decide
from aegis.policy.rollout import Policies


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class Pipeline:
    policy: PolicyStore
    identity: IdentityStage
    kill_switch: KillSwitchStage
    chain: ChainStage
    limits: LimitStage
    approvals: ApprovalStage
    evidence: EvidenceSink
    timeout: float | None = 0.25
    clock: Callable[[], datetime] = _utc_now
    audit: AuditStage | None = None
    #: How long a write waits for its audit record to be durable before failing closed.
    audit_timeout: float = 2.0

    @classmethod
    def with_defaults(
        cls,
        policy: CompiledPolicy | PolicyStore,
        *,
        evidence: EvidenceSink | None = None,
        timeout: float | None = 0.25,
        clock: Callable[[], datetime] = _utc_now,
    ) -> Pipeline:
        """A pipeline with every later stage at its working default."""
        store = policy if isinstance(policy, PolicyStore) else PolicyStore(policy)
        return cls(
            policy=store,
            identity=AllowAllIdentity(),
            kill_switch=NoKillSwitch(),
            chain=NoChainCheck(),
            limits=NoLimits(),
            approvals=InMemoryApprovals(),
            evidence=evidence or NullEvidence(),
            timeout=timeout,
            clock=clock,
        )

    async def decide(self, call: ToolCall, ctx: RequestContext) -> PipelineResult:
        start_ns = time.time_ns()
        policies = self.policy.policies  # one snapshot for the whole call
        # Until identity has spoken, the call's own tenant picks the policy whose
        # fail modes apply; a tenant claim that identity later refuses only ever
        # reaches that tenant's declared reads (DESIGN.md §3: writes fail closed).
        policy = policies.route(call.tenant).active
        now = self.clock()
        try:
            run = self._run(call, ctx, policies, now)
            try:
                # Drive the first step ourselves: with in-memory stages a call never
                # waits on I/O and completes here, and arming a timer for it (about
                # a fifth of the pipeline's cost) would be wasted.
                pending = run.send(None)
            except StopIteration as done:
                result = cast(PipelineResult, done.value)
            else:
                # It waits on I/O (a store): the rest runs under the timeout.
                if self.timeout is None:
                    result = await _Resume(run, pending)
                else:
                    async with asyncio.timeout(self.timeout):
                        result = await _Resume(run, pending)
        except TimeoutError:
            result = self._fail(
                call, policy, now, ErrorCode.PIPELINE_TIMEOUT, f"no decision within {self.timeout}s"
            )
        except StoreUnavailableError as exc:
            result = self._fail(
                call,
                policy,
                now,
                ErrorCode.PIPELINE_STORE_UNAVAILABLE,
                str(exc) or "store unavailable",
            )
        except Exception as exc:  # any bug becomes "could not decide", never an allow by accident
            result = self._fail(
                call, policy, now, ErrorCode.PIPELINE_INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"
            )
        end_ns = time.time_ns()
        refs = self.evidence.record(result, ctx, start_ns, end_ns)
        if self.audit is not None:
            result = await self._audit(
                self.audit, result, ctx, (start_ns, end_ns), refs, policy, now
            )
        return result

    async def _audit(  # noqa: PLR0917 - one private step of decide()
        self,
        audit: AuditStage,
        result: PipelineResult,
        ctx: RequestContext,
        span: tuple[int, int],
        refs: TraceRefs | None,
        policy: CompiledPolicy,
        now: datetime,
    ) -> PipelineResult:
        """A write tool's decision is on disk before its answer leaves (DESIGN.md §6);
        if it cannot be -- the store fails, stalls past ``audit_timeout``, or the
        stage breaks -- the call fails closed: no unrecorded write. The
        replacement answer leaves its own evidence."""
        durable = (result.policy or policy).kind_of(result.call) is ToolKind.WRITE
        try:
            async with asyncio.timeout(self.audit_timeout if durable else None):
                await audit.record(
                    result, ctx, start_ns=span[0], end_ns=span[1], refs=refs, durable=durable
                )
        except Exception as exc:  # unavailable (AuditUnavailableError), stalled or broken
            if not durable or not result.decision.outcome.permits:
                return result  # a refusal stands whether or not it was recorded
            detail = "audit store stalled" if isinstance(exc, TimeoutError) else str(exc)
            failed = self._fail(
                result.call, policy, now, ErrorCode.AUDIT_UNAVAILABLE, detail, force_closed=True
            )
            self.evidence.record(failed, ctx, span[0], time.time_ns())
            return failed
        return result

    async def _run(
        self, call: ToolCall, ctx: RequestContext, policies: Policies, now: datetime
    ) -> PipelineResult:
        verified = await self.identity.authenticate(call, ctx)
        if isinstance(verified, Refusal):
            policy = policies.route(call.tenant).active
            return PipelineResult(_refused(policy, now, verified), call, policy=policy)
        call = verified
        route = policies.route(call.tenant)  # the verified tenant's own policy
        policy = route.active
        refusal = await self.kill_switch.check(call)
        if refusal is None:
            refusal = await self.chain.check(call, policy)
        if refusal is None:
            refusal = await self.limits.check(call, policy)
        if refusal is not None:
            return PipelineResult(_refused(policy, now, refusal), call, policy=policy)
        if route.candidate is None:
            decision = decide(policy, call, now)
        else:
            decision, policy = route.decide(call, now)
        if decision.outcome is Outcome.APPROVAL_NEEDED:
            decision = await self.approvals.request(call, decision)
        return PipelineResult(decision, call, policy=policy)

    def _fail(
        self,
        call: ToolCall,
        policy: CompiledPolicy,
        now: datetime,
        error: ErrorCode,
        detail: str,
        *,
        force_closed: bool = False,
    ) -> PipelineResult:
        mode = FailMode.CLOSED if force_closed else policy.fail_mode_for(call)
        if mode is FailMode.OPEN:
            outcome, code = Outcome.ALLOW, ErrorCode.DECISION_FAIL_OPEN
            reason = f"could not decide ({error}); the policy lets this read tool fail open"
        else:
            outcome, code = Outcome.DENY, ErrorCode.DECISION_FAIL_CLOSED
            reason = f"could not decide ({error}); failing closed"
        decision = Decision(
            outcome=outcome,
            reason=reason,
            code=code,
            rule_ids=(),
            policy_version=policy.version,
            bundle_hash=policy.bundle_hash,
            decision_id=new_decision_id(now),
        )
        return PipelineResult(decision, call, error, detail, policy)


class _Resume:
    """Awaits the rest of a coroutine whose first step was already taken.

    ``yield from`` semantics (PEP 380) written out, because the first value the
    coroutine yielded is already in hand: values and exceptions (a timeout's
    cancellation) are passed through to it, its futures out to the event loop.
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, PipelineResult], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, PipelineResult]:
        to_yield = self._first
        while True:
            try:
                sent = yield to_yield
            except BaseException as exc:  # forwarded into the coroutine, not handled
                try:
                    to_yield = self._coro.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    to_yield = self._coro.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]


def _refused(policy: CompiledPolicy, now: datetime, refusal: Refusal) -> Decision:
    return Decision(
        outcome=Outcome.DENY,
        reason=refusal.reason,
        code=refusal.code,
        rule_ids=(),
        policy_version=policy.version,
        bundle_hash=policy.bundle_hash,
        decision_id=new_decision_id(now),
        retry_after=refusal.retry_after,
    )
