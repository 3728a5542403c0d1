"""The enforcement pipeline every door calls: identity -> kill switch -> chain ->
limits -> policy -> approvals -> evidence, with fail modes around it."""

from aegis.pipeline.pipeline import Pipeline
from aegis.pipeline.policy_store import PolicyStore
from aegis.pipeline.stages import (
    AllowAllIdentity,
    ApprovalStage,
    AuditStage,
    AuditUnavailableError,
    ChainStage,
    EvidenceSink,
    IdentityStage,
    InMemoryApprovals,
    KillSwitchStage,
    LimitStage,
    NoChainCheck,
    NoKillSwitch,
    NoLimits,
    PipelineResult,
    Refusal,
    RequestContext,
    StoreUnavailableError,
    TraceRefs,
)

__all__ = [
    "AllowAllIdentity",
    "ApprovalStage",
    "AuditStage",
    "AuditUnavailableError",
    "ChainStage",
    "EvidenceSink",
    "IdentityStage",
    "InMemoryApprovals",
    "KillSwitchStage",
    "LimitStage",
    "NoChainCheck",
    "NoKillSwitch",
    "NoLimits",
    "Pipeline",
    "PipelineResult",
    "PolicyStore",
    "Refusal",
    "RequestContext",
    "StoreUnavailableError",
    "TraceRefs",
]
