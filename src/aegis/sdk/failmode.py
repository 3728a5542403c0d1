"""What a client answers when it could not decide (DESIGN.md §3 fail modes).

Closed by default: :class:`~aegis.sdk.errors.AegisUnavailable` is raised and the
tool does not run. A client fails open only for the read tools it is explicitly
given (``fail_open_reads``, names or ``*``/``?`` globs as in policies) -- the
policy's own fail mode lives in the decision service and cannot be consulted
when the service is unreachable, so the client's configuration is the
declaration. A call that states ``kind: write`` never fails open, listed or not.

Every fail-open is counted (:attr:`FailOpenGate.count`), logged as a warning on
the ``aegis.sdk`` logger, and handed to the ``on_fail_open`` hook if one is
given; if the hook raises, the call fails closed with that exception.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aegis.core.call import ToolCall, ToolKind
from aegis.core.decision import Decision, Outcome, new_decision_id
from aegis.errors import ErrorCode
from aegis.policy.values import glob_matcher
from aegis.sdk.errors import AegisUnavailable

logger = logging.getLogger("aegis.sdk")


@dataclass(frozen=True, slots=True)
class FailOpenEvent:
    """One call let through without a decision: what, why, and the answer given."""

    call: ToolCall
    error: AegisUnavailable
    decision: Decision


FailOpenHook = Callable[[FailOpenEvent], None]


class FailOpenGate:
    """Turns "could not decide" into the configured answer for one client."""

    def __init__(
        self, read_tools: Iterable[str] = (), on_fail_open: FailOpenHook | None = None
    ) -> None:
        if isinstance(read_tools, str):
            raise TypeError("fail_open_reads takes a collection of tool names, not one string")
        self.read_tools = tuple(read_tools)
        self._matchers = tuple(glob_matcher(p) for p in self.read_tools)
        self._hook = on_fail_open
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        """Calls this client let through because it could not decide them."""
        return self._count

    def may_fail_open(self, call: ToolCall) -> bool:
        if call.kind is ToolKind.WRITE:
            return False
        return any(match(call.tool) for match in self._matchers)

    def resolve(self, call: ToolCall, error: AegisUnavailable) -> Decision:
        """The fail-open decision for ``call``, or raise ``error`` (fail closed)."""
        if not self.may_fail_open(call):
            raise error
        return self._open(call, error)

    def resolve_batch(self, calls: Sequence[ToolCall], error: AegisUnavailable) -> list[Decision]:
        """A batch fails as a whole: open only if every call in it may fail open."""
        if not calls or not all(self.may_fail_open(c) for c in calls):
            raise error
        return [self._open(call, error) for call in calls]

    def _open(self, call: ToolCall, error: AegisUnavailable) -> Decision:
        decision = Decision(
            outcome=Outcome.ALLOW,
            reason=f"could not decide ({error.code}); the client lets this read tool fail open",
            code=ErrorCode.DECISION_FAIL_OPEN,
            rule_ids=(),
            policy_version="",
            bundle_hash="",
            decision_id=new_decision_id(datetime.now(UTC)),
        )
        with self._lock:
            self._count += 1
        logger.warning(
            "aegis: failing open for read tool %s (tenant %s, agent %s): %s",
            call.tool,
            call.tenant,
            call.agent_id,
            error,
            extra={
                "aegis_decision_id": decision.decision_id,
                "aegis_code": str(ErrorCode.DECISION_FAIL_OPEN),
                "aegis_error": str(error.code),
            },
        )
        if self._hook is not None:
            self._hook(FailOpenEvent(call, error, decision))
        return decision
