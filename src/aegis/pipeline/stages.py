"""The pipeline's stages as typed protocols, each with a working default.

Later capabilities replace the defaults (tokens and the kill switch, limits
and budgets in Redis, approvals over Slack/Teams, the signed audit log); the
doors already call the final shape. A stage that refuses a call returns a
:class:`Refusal`; a stage whose backing store is down raises
:class:`StoreUnavailableError`, which the pipeline's fail mode handles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from aegis.core.call import ToolCall
from aegis.core.decision import Decision, Outcome
from aegis.errors import ErrorCode
from aegis.policy.compiled import CompiledPolicy


class StoreUnavailableError(Exception):
    """A stage could not reach the store it needs (Redis, PostgreSQL, ...)."""


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a door knows about the request beyond the call itself."""

    door: str
    credentials: str | None = None
    remote_addr: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A stage's "no", before the policy is consulted."""

    code: ErrorCode
    reason: str
    retry_after: float | None = None


class IdentityStage(Protocol):
    async def authenticate(self, call: ToolCall, ctx: RequestContext) -> ToolCall | Refusal:
        """The call with its verified identity, or why it has none."""
        ...


class KillSwitchStage(Protocol):
    async def check(self, call: ToolCall) -> Refusal | None: ...


class ChainStage(Protocol):
    async def check(self, call: ToolCall, policy: CompiledPolicy) -> Refusal | None: ...


class LimitStage(Protocol):
    async def check(self, call: ToolCall, policy: CompiledPolicy) -> Refusal | None: ...


class ApprovalStage(Protocol):
    async def request(self, call: ToolCall, decision: Decision) -> Decision:
        """Open (or find) the approval ticket for an approval_needed decision."""
        ...


class PipelineResult(NamedTuple):
    """What a door renders. ``error`` is set when the core could not decide and
    ``decision`` is then the fail mode's answer (code decision.fail_closed/open)."""

    decision: Decision
    call: ToolCall
    error: ErrorCode | None = None
    error_detail: str | None = None
    #: The policy version that decided (its rules, kinds and redactions apply to
    #: the evidence); None only where no policy was consulted.
    policy: CompiledPolicy | None = None

    @property
    def failed_open(self) -> bool:
        return self.error is not None and self.decision.outcome is Outcome.ALLOW


class TraceRefs(NamedTuple):
    """The span a decision was recorded under (W3C ids, lower-case hex): how logs,
    spans and audit records join."""

    trace_id: str
    span_id: str


class EvidenceSink(Protocol):
    def record(
        self, result: PipelineResult, ctx: RequestContext, start_ns: int, end_ns: int
    ) -> TraceRefs | None:
        """Record one decision. Must not raise: evidence failures are counted, not fatal."""
        ...


class AuditUnavailableError(Exception):
    """The audit log could not take a record it had to make durable."""


class AuditStage(Protocol):
    async def record(
        self,
        result: PipelineResult,
        ctx: RequestContext,
        *,
        start_ns: int,
        end_ns: int,
        refs: TraceRefs | None,
        durable: bool,
    ) -> None:
        """Append the decision's audit record. With ``durable`` (write tools) return
        only once it is on disk, or raise AuditUnavailableError; otherwise enqueue
        and return at once (an overflow is counted, never silent)."""
        ...


# -- defaults -------------------------------------------------------------------------


class AllowAllIdentity:
    """Takes the identity the call states. The default until tokens are configured;
    `aegis serve` logs a warning when it runs with it."""

    async def authenticate(self, call: ToolCall, ctx: RequestContext) -> ToolCall | Refusal:
        return call


class NullEvidence:
    """Records nothing: for embedded use (the SDK's in-process mode) and tests."""

    def record(
        self, result: PipelineResult, ctx: RequestContext, start_ns: int, end_ns: int
    ) -> TraceRefs | None:
        return None


class NoKillSwitch:
    async def check(self, call: ToolCall) -> Refusal | None:
        return None


class NoChainCheck:
    """Chains are checked by policy (``chain`` conditions) until the registry exists."""

    async def check(self, call: ToolCall, policy: CompiledPolicy) -> Refusal | None:
        return None


class NoLimits:
    """Limits and budgets are declared in policies; enforcing them needs a shared
    store (a per-process counter would let N replicas allow N times the limit)."""

    async def check(self, call: ToolCall, policy: CompiledPolicy) -> Refusal | None:
        return None


@dataclass
class InMemoryApprovals:
    """Gives each approval_needed decision a ticket id, so every door can return it.

    In-process only; the approvals capability replaces it with a shared store,
    Slack/Teams messages and single-use override tokens.
    """

    prefix: str = "apr"
    tickets: dict[str, tuple[ToolCall, Decision]] = field(default_factory=dict)
    max_tickets: int = 10_000

    async def request(self, call: ToolCall, decision: Decision) -> Decision:
        approval_id = f"{self.prefix}_{decision.decision_id}"
        if len(self.tickets) >= self.max_tickets:
            self.tickets.pop(next(iter(self.tickets)))
        self.tickets[approval_id] = (call, decision)
        return decision._replace(approval_id=approval_id)
