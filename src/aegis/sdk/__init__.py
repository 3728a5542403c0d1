"""The Python SDK: guard agent tools with Aegis, in-process or over the decision API.

=====================  ===================================================
``LocalAegis``         the real pipeline in-process (sync); no network
``AsyncLocalAegis``    the same, for asyncio code
``AegisClient``        the decision API over HTTP (sync, httpx)
``AsyncAegisClient``   the same, for asyncio code
``guard``              decorator: a tool function runs only if Aegis permits
``aegis_context``      who is calling (tenant, agent, parent chain) for a block
``PolicyViolation``    ... and the other errors in :mod:`aegis.sdk.errors`
=====================  ===================================================

The LangChain adapter is :mod:`aegis.sdk.langchain` (needs ``langchain-core``).
See docs/sdk.md.
"""

from aegis.sdk.client import AegisClient, AsyncAegisClient
from aegis.sdk.context import CallerContext, CallSpec, aegis_context, current_context
from aegis.sdk.errors import (
    AegisRequestError,
    AegisSDKError,
    AegisTimeout,
    AegisUnavailable,
    ApprovalRequired,
    InvalidCall,
    PolicyViolation,
    ProtocolError,
    RateLimited,
    raise_for_decision,
    violation_for,
)
from aegis.sdk.failmode import FailOpenEvent
from aegis.sdk.guard import guard
from aegis.sdk.local import AsyncLocalAegis, LocalAegis
from aegis.sdk.protocols import AnyAegis, AsyncAegis, SyncAegis
from aegis.sdk.wire import decision_from_dict

__all__ = [
    "AegisClient",
    "AegisRequestError",
    "AegisSDKError",
    "AegisTimeout",
    "AegisUnavailable",
    "AnyAegis",
    "ApprovalRequired",
    "AsyncAegis",
    "AsyncAegisClient",
    "AsyncLocalAegis",
    "CallSpec",
    "CallerContext",
    "FailOpenEvent",
    "InvalidCall",
    "LocalAegis",
    "PolicyViolation",
    "ProtocolError",
    "RateLimited",
    "SyncAegis",
    "aegis_context",
    "current_context",
    "decision_from_dict",
    "guard",
    "raise_for_decision",
    "violation_for",
]
