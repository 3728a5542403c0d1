"""Policy language v1: the document model, as users write it in YAML or JSON.

These pydantic models are the single source of truth for the language: the
validate stage runs them, `aegis policy schema` publishes their JSON Schema for
editors, and docs/policy-language.md describes them construct by construct.
Every model forbids unknown keys -- a misspelt key must be an error, not a rule
that silently matches more than its author meant.

Semantics (matching, precedence) live in the compiler and evaluator, not here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictFloat, StrictInt, Tag

API_VERSION = "aegis.dev/v1"

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-/]{0,127}$")]
Number = StrictInt | StrictFloat
#: A duration: integer seconds, or a string such as "90s", "15m", "1h", "1d".
Duration = StrictInt | str
JsonScalar = None | bool | StrictInt | StrictFloat | str
JsonAny = Any


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, populate_by_name=False, allow_inf_nan=False
    )


# -- scope ------------------------------------------------------------------------


class Scope(_Model):
    """Which calls a rule (or a limit) is about. Each present key narrows; values OR."""

    tenants: list[Identifier] | None = Field(
        default=None, description="Tenants this applies to. Default: the policy's tenant, or all."
    )
    agents: list[str] | None = Field(
        default=None, description="Agent ids; globs allowed ('finance-*')."
    )
    labels: list[str] | None = Field(
        default=None, description="Matches an agent carrying any of these labels or roles."
    )
    tools: list[str] = Field(
        default_factory=lambda: ["*"], description="Tool names; globs allowed ('stripe.*')."
    )
    kind: Literal["read", "write"] | None = Field(default=None, description="Tool kind.")
    phase: Literal["call", "list"] | None = Field(
        default=None, description="MCP phase: 'list' filters tools/list, 'call' checks tools/call."
    )


# -- conditions -------------------------------------------------------------------


class ParamCondition(_Model):
    """A test on one parameter, addressed by path. Several operators: all must hold."""

    param: str = Field(description="Path into params: 'amount', 'customer.email', 'items[0].sku'.")
    exists: bool | None = None
    eq: JsonAny = Field(default=None, json_schema_extra={"description": "Equal (JSON equality)."})
    ne: JsonAny = None
    in_: list[JsonAny] | None = Field(default=None, alias="in")
    not_in: list[JsonAny] | None = None
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None
    min_length: Annotated[int, Field(ge=0)] | None = None
    max_length: Annotated[int, Field(ge=0)] | None = None
    same_as: Literal["tenant", "agent_id", "session_id", "parent_agent_id"] | None = Field(
        default=None, description="Equals this field of the call itself (e.g. its tenant)."
    )
    matches: str | None = Field(default=None, description="RE2 regex, search semantics.")
    not_matches: str | None = None
    host_in: list[str] | None = Field(default=None, description="The value is a URL or host.")
    host_not_in: list[str] | None = None
    ip_in: list[str] | None = Field(default=None, description="CIDR blocks.")
    ip_not_in: list[str] | None = None


class DestinationTest(_Model):
    """Tests on the call's destination (a URL or host[:port])."""

    exists: bool | None = None
    host_in: list[str] | None = None
    host_not_in: list[str] | None = None
    ip_in: list[str] | None = None
    ip_not_in: list[str] | None = None
    scheme_in: list[str] | None = None
    port_in: list[Annotated[int, Field(ge=1, le=65535)]] | None = None


class DestinationCondition(_Model):
    destination: DestinationTest


class TimeWindow(_Model):
    """A recurring window in local time. ``end`` before ``start`` wraps past midnight."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    start: str = Field(default="00:00", description="HH:MM, inclusive.")
    end: str = Field(default="24:00", description="HH:MM, exclusive.")
    timezone: str = Field(default="UTC", description="IANA zone name.")


class TimeCondition(_Model):
    time: TimeWindow


class ChainTest(_Model):
    """Tests on the delegation chain (root ... direct parent) of the calling agent."""

    parent_in: list[str] | None = Field(default=None, description="Direct parent is one of.")
    root_in: list[str] | None = None
    includes_any: list[str] | None = Field(default=None, description="Some ancestor is one of.")
    excludes: list[str] | None = Field(default=None, description="No ancestor is one of.")
    depth_lte: Annotated[int, Field(ge=0)] | None = None
    depth_gte: Annotated[int, Field(ge=0)] | None = None
    follows_spawn_graph: bool | None = Field(
        default=None,
        description="Every hop parent->child is allowed by the declared agents' may_spawn.",
    )


class ChainCondition(_Model):
    chain: ChainTest


class CostCondition(_Model):
    """Tests on the call's cost estimate (or the declared tool cost when absent)."""

    cost: CostTest


class CostTest(_Model):
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None


class AnyCondition(_Model):
    any: list[Condition] = Field(min_length=1)


class AllCondition(_Model):
    all: list[Condition] = Field(min_length=1)


class NotCondition(_Model):
    not_: Condition = Field(alias="not")


_CONDITION_KEYS = ("param", "destination", "time", "chain", "cost", "any", "all", "not")


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in _CONDITION_KEYS:
            if key in value:
                return key
        return None
    for key in _CONDITION_KEYS:
        attr = "not_" if key == "not" else key
        if hasattr(value, attr):
            return key
    return None


Condition = Annotated[
    Annotated[ParamCondition, Tag("param")]
    | Annotated[DestinationCondition, Tag("destination")]
    | Annotated[TimeCondition, Tag("time")]
    | Annotated[ChainCondition, Tag("chain")]
    | Annotated[CostCondition, Tag("cost")]
    | Annotated[AnyCondition, Tag("any")]
    | Annotated[AllCondition, Tag("all")]
    | Annotated[NotCondition, Tag("not")],
    Discriminator(
        _condition_tag,
        custom_error_type="invalid_condition",
        custom_error_message=(
            "a condition needs exactly one of: param, destination, time, chain, cost, any, all, not"
        ),
    ),
]


# -- obligations ------------------------------------------------------------------


class CustomPattern(_Model):
    name: Identifier
    regex: str = Field(description="RE2 pattern; every match is redacted.")


class Sanitize(_Model):
    """Redaction obligations of a sanitize rule. Results combine across rules."""

    fields: list[str] = Field(default_factory=list, description="Param paths to blank out.")
    detectors: list[str] = Field(default_factory=list, description="Built-in DLP detectors.")
    patterns: list[CustomPattern] = Field(default_factory=list)
    scan: list[str] | None = Field(
        default=None, description="Limit detectors to these param paths (default: all strings)."
    )


class Approval(_Model):
    """Who approves an approval_needed call, where they are asked, how long it waits."""

    group: Identifier
    channel: str | None = Field(default=None, description="e.g. 'slack:#payments-approvals'.")
    ttl: Duration = "15m"


# -- rules ------------------------------------------------------------------------

Effect = Literal["allow", "deny", "sanitize", "approval_needed"]


class Rule(_Model):
    id: Identifier
    description: str | None = None
    mode: Literal["enforce", "shadow"] = "enforce"
    match: Scope = Field(default_factory=Scope)
    when: list[Condition] = Field(default_factory=list, description="All must hold.")
    effect: Effect
    reason: str | None = Field(default=None, max_length=1000)
    sanitize: Sanitize | None = None
    approval: Approval | None = None


# -- declarations (validated now, enforced by the limits/approvals services) -------


class ToolDecl(_Model):
    name: str = Field(description="Exact tool name or glob.")
    kind: Literal["read", "write"]
    cost: Annotated[StrictInt, Field(ge=0)] | Annotated[StrictFloat, Field(ge=0)] | None = Field(
        default=None, description="Cost of one call, in the budget's currency."
    )
    description: str | None = None


class AgentDecl(_Model):
    id: Identifier
    tenant: Identifier | None = None
    labels: list[str] = Field(default_factory=list)
    may_spawn: list[Identifier] = Field(default_factory=list)
    description: str | None = None


KeyPart = Literal["agent", "tenant", "tool", "session"]


def _per_agent() -> list[KeyPart]:
    return ["agent"]


class Rate(_Model):
    count: Annotated[int, Field(gt=0)]
    per: Duration


class LimitDecl(_Model):
    """A rate and/or concurrency limit, counted separately for each key."""

    id: Identifier
    description: str | None = None
    scope: Scope = Field(default_factory=Scope)
    per: list[KeyPart] = Field(default_factory=_per_agent, min_length=1)
    rate: Rate | None = None
    concurrency: Annotated[int, Field(gt=0)] | None = None
    on_exceed: Literal["deny", "approval_needed"] = "deny"


class BudgetDecl(_Model):
    """A spending budget over a period, fed by tool costs and call cost estimates."""

    id: Identifier
    description: str | None = None
    scope: Scope = Field(default_factory=Scope)
    per: list[KeyPart] = Field(default_factory=_per_agent, min_length=1)
    amount: Annotated[StrictInt, Field(gt=0)] | Annotated[StrictFloat, Field(gt=0)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    period: Duration = "1d"
    on_exceed: Literal["deny", "approval_needed"] = "deny"


class ApprovalCapDecl(_Model):
    """A cap on approval requests: against approval floods (seeds: 'approval caps')."""

    id: Identifier
    description: str | None = None
    scope: Scope = Field(default_factory=Scope)
    per: list[KeyPart] = Field(default_factory=_per_agent, min_length=1)
    max_pending: Annotated[int, Field(gt=0)] | None = None
    rate: Rate | None = None
    on_exceed: Literal["deny"] = "deny"


# -- the document -----------------------------------------------------------------


class FailModes(_Model):
    """What a door answers when it cannot decide. A write tool never fails open."""

    read: Literal["closed", "open"] = "closed"
    write: Literal["closed", "open"] = "closed"


class Defaults(_Model):
    outcome: Literal["deny", "allow", "approval_needed"] = "deny"
    reason: str | None = None
    approval: Approval | None = None
    fail_mode: FailModes = Field(default_factory=FailModes)


class Metadata(_Model):
    name: Identifier
    version: str | None = Field(default=None, max_length=128)
    tenant: Identifier | None = Field(
        default=None, description="Every rule of this document is scoped to this tenant."
    )
    description: str | None = None
    owner: str | None = None


class PolicyDocument(_Model):
    """One policy file."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
        title="Aegis policy (v1)",
        json_schema_extra={"$id": "https://aegis.dev/schema/policy.v1.json"},
    )

    api_version: Literal["aegis.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["Policy"]
    metadata: Metadata
    defaults: Defaults | None = None
    tools: list[ToolDecl] = Field(default_factory=list)
    agents: list[AgentDecl] = Field(default_factory=list)
    limits: list[LimitDecl] = Field(default_factory=list)
    budgets: list[BudgetDecl] = Field(default_factory=list)
    approval_caps: list[ApprovalCapDecl] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)


for _m in (AnyCondition, AllCondition, NotCondition, CostCondition, Rule, PolicyDocument):
    _m.model_rebuild()
