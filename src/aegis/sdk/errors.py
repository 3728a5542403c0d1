"""What the SDK raises, and how a Decision becomes an exception.

The hierarchy (every class carries the stable ``.code`` of :class:`~aegis.errors.AegisError`)::

    AegisError                      aegis.errors: every error raised on purpose
    ├── CallError                   aegis.errors: a ToolCall that cannot be decided
    │   └── InvalidCall             (also an AegisRequestError, below)
    └── AegisSDKError               anything the SDK raises
        ├── PolicyViolation         decided, and not permitted; .decision and its fields
        │   ├── ApprovalRequired    approval_needed: .approval_id, .approval
        │   └── RateLimited         denied by a limit or budget: .retry_after
        ├── AegisUnavailable        could not decide: unreachable, 5xx, 408/429
        │   ├── AegisTimeout        no answer within the client's timeout
        │   └── ProtocolError       an answer that is not a readable decision
        └── AegisRequestError       the decision service refused the request (.status)
            └── InvalidCall         a malformed call (call.*), refused locally or by a 400

A :class:`PolicyViolation` is a decision: its fields are the PolicyViolation body
of DESIGN.md §3 (code, outcome, reason, rule ids, policy version, decision id,
approval id, retry-after). :class:`AegisUnavailable` is "could not decide", a
different state from "deny": a client's fail mode turns it into an answer
(closed by default: the error is raised).
"""

from __future__ import annotations

from typing import Any, cast

from aegis.core.decision import ApprovalRequirement, Decision, Outcome
from aegis.errors import AegisError, CallError, ErrorCode


def error_code(raw: str, fallback: ErrorCode) -> ErrorCode:
    """``raw`` as an ErrorCode; a code this SDK does not know (a newer server's) is
    kept as the string it is -- ErrorCode is a StrEnum, so comparisons still work."""
    if not raw:
        return fallback
    try:
        return ErrorCode(raw)
    except ValueError:
        return cast(ErrorCode, raw)


class AegisSDKError(AegisError):
    """Base of everything the SDK raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (task queues, multiprocessing): rebuilt from code and message,
        # then the other attributes (status, path, ...) restored as state.
        return (type(self), (self.code, self.message), self.__dict__)


class PolicyViolation(AegisSDKError):  # noqa: N818 -- the name DESIGN.md §3 gives the body
    """The call was decided and is not permitted. ``decision`` is the whole answer."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.code, decision.reason)
        self.decision = decision

    @property
    def outcome(self) -> Outcome:
        return self.decision.outcome

    @property
    def reason(self) -> str:
        return self.decision.reason

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return self.decision.rule_ids

    @property
    def policy_version(self) -> str:
        return self.decision.policy_version

    @property
    def bundle_hash(self) -> str:
        return self.decision.bundle_hash

    @property
    def decision_id(self) -> str:
        return self.decision.decision_id

    @property
    def approval_id(self) -> str | None:
        return self.decision.approval_id

    @property
    def retry_after(self) -> float | None:
        return self.decision.retry_after

    def to_dict(self) -> dict[str, Any]:
        """The PolicyViolation JSON body every door returns (DESIGN.md §3)."""
        return self.decision.error_body()

    def __str__(self) -> str:
        rules = f" [rules: {', '.join(self.rule_ids)}]" if self.rule_ids else ""
        return f"{self.code}: {self.reason}{rules} (decision {self.decision_id})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.decision,))


class ApprovalRequired(PolicyViolation):
    """approval_needed: a human must approve this exact call first.

    ``approval_id`` names the ticket; ``approval`` says who approves, where and for
    how long the ticket stays open.
    """

    @property
    def approval(self) -> ApprovalRequirement | None:
        return self.decision.approval


class RateLimited(PolicyViolation):
    """Denied by a rate limit, concurrency window or budget; retry after ``retry_after``."""


class AegisUnavailable(AegisSDKError):  # noqa: N818 -- reads as the state it reports
    """No decision: the service was unreachable, failed (5xx) or answered unreadably."""


class AegisTimeout(AegisUnavailable):
    """No answer within the client's timeout."""


class ProtocolError(AegisUnavailable):
    """The decision service answered something that is not a readable decision."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.PIPELINE_INTERNAL_ERROR, message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,))


class AegisRequestError(AegisSDKError):
    """The decision service refused the request itself (bad token, bad input).

    ``status`` is the HTTP status, or ``None`` when the SDK refused it locally.
    """

    def __init__(
        self, code: ErrorCode, message: str, *, status: int | None = None, path: str = ""
    ) -> None:
        super().__init__(code, message)
        self.status = status
        self.path = path


class InvalidCall(AegisRequestError, CallError):  # noqa: N818 -- pairs with CallError
    """A malformed call (``call.*``): refused before sending, or by the service's 400.

    Also a :class:`~aegis.errors.CallError`, so one ``except`` catches malformed calls
    whether the engine is in-process or behind HTTP.
    """

    def __init__(
        self, code: ErrorCode, message: str, path: str = "", *, status: int | None = None
    ) -> None:
        AegisRequestError.__init__(self, code, message, status=status, path=path)

    @classmethod
    def from_call_error(cls, exc: CallError) -> InvalidCall:
        return cls(exc.code, exc.message, exc.path)


def violation_for(decision: Decision) -> PolicyViolation | None:
    """The exception for a decision that does not permit its call, else ``None``.

    Limits are recognised by ``retry_after`` (as the HTTP mapping turns them into
    429) or by their code.
    """
    if decision.outcome.permits:
        return None
    if decision.outcome is Outcome.APPROVAL_NEEDED:
        return ApprovalRequired(decision)
    if decision.retry_after is not None or decision.code == ErrorCode.DECISION_LIMIT_EXCEEDED:
        return RateLimited(decision)
    return PolicyViolation(decision)


def raise_for_decision(decision: Decision) -> Decision:
    """Return ``decision`` if it permits the call (allow, sanitize), else raise its
    :class:`PolicyViolation`."""
    violation = violation_for(decision)
    if violation is not None:
        raise violation
    return decision
