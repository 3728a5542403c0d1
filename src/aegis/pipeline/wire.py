"""How a Decision maps onto HTTP, shared by every HTTP-speaking door (DESIGN.md §3).

allow, sanitize          200  (the call proceeds; x-aegis-decision-id names it)
deny                     403  with the PolicyViolation JSON body
limits (retry_after)     429  with Retry-After (RFC 6585 §4, RFC 9110 §10.2.3)
approval_needed          428  with x-aegis-approval-id: the call may be retried
                              once an approver grants an override (RFC 6585 §3,
                              "Precondition Required")
"""

from __future__ import annotations

import json
import math

from aegis.core.decision import Decision, Outcome

DECISION_ID_HEADER = "x-aegis-decision-id"
APPROVAL_ID_HEADER = "x-aegis-approval-id"
CODE_HEADER = "x-aegis-code"
POLICY_VERSION_HEADER = "x-aegis-policy-version"

STATUS_APPROVAL_NEEDED = 428
STATUS_LIMITED = 429
STATUS_DENIED = 403


def http_status(decision: Decision) -> int:
    if decision.outcome.permits:
        return 200
    if decision.outcome is Outcome.APPROVAL_NEEDED:
        return STATUS_APPROVAL_NEEDED
    if decision.retry_after is not None:
        return STATUS_LIMITED
    return STATUS_DENIED


def decision_headers(decision: Decision) -> list[tuple[str, str]]:
    headers = [
        (DECISION_ID_HEADER, decision.decision_id),
        (CODE_HEADER, str(decision.code)),
        (POLICY_VERSION_HEADER, decision.policy_version),
    ]
    if decision.approval_id:
        headers.append((APPROVAL_ID_HEADER, decision.approval_id))
    if decision.retry_after is not None:
        # Retry-After takes whole seconds (RFC 9110 §10.2.3); round up, never to 0.
        headers.append(("retry-after", str(max(1, math.ceil(decision.retry_after)))))
    return headers


def error_json(decision: Decision) -> bytes:
    return json.dumps(decision.error_body(), separators=(",", ":")).encode()
