"""Core values shared by every layer: the call, the decision. No I/O here."""

from aegis.core.call import (
    JsonValue,
    McpPhase,
    Params,
    ToolCall,
    ToolKind,
    TraceContext,
    parse_call,
)
from aegis.core.decision import (
    ApprovalRequirement,
    Decision,
    FailMode,
    Mode,
    Outcome,
    Redaction,
    ShadowResult,
    new_decision_id,
)

__all__ = [
    "ApprovalRequirement",
    "Decision",
    "FailMode",
    "JsonValue",
    "McpPhase",
    "Mode",
    "Outcome",
    "Params",
    "Redaction",
    "ShadowResult",
    "ToolCall",
    "ToolKind",
    "TraceContext",
    "new_decision_id",
    "parse_call",
]
