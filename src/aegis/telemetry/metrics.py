"""Prometheus metrics of the gateway, on a registry the server owns (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Decisions take microseconds; doors add up to milliseconds. Buckets span both.
LATENCY_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip

#: Label value for tools the policy does not declare: agents can invent tool
#: names, and one time series per invented name would be a cardinality attack.
UNDECLARED_TOOL = "_undeclared"


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.decisions = Counter(
            "aegis_decisions",
            "Decisions by outcome, tool and door.",
            ["outcome", "tool", "door"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aegis_decision_latency_seconds",
            "Time from a call entering the pipeline to its decision.",
            ["door"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fail_open = Counter(
            "aegis_fail_open",
            "Calls allowed because the core could not decide and the tool fails open.",
            ["door", "error"],
            registry=self.registry,
        )
        self.pipeline_errors = Counter(
            "aegis_pipeline_errors",
            "Calls the core could not decide, by error code (fail mode applied).",
            ["door", "error"],
            registry=self.registry,
        )
        self.shadow_disagreements = Counter(
            "aegis_shadow_disagreements",
            "Decisions where shadow rules would have decided differently.",
            ["tool", "live", "shadow"],
            registry=self.registry,
        )
        # -- policy versions and rollout (docs/bundles.md "Serving bundles") --
        self.rollout_disagreements = Counter(
            "aegis_policy_rollout_disagreements",
            "Decisions where the other policy version in a rollout (the candidate, or the "
            "active one beside a canary) would have decided differently. Labelled by "
            "versions, not tenants: callers name tenants, versions are bounded.",
            ["version", "other_version", "live", "other"],
            registry=self.registry,
        )
        self.policy_reloads = Counter(
            "aegis_policy_reloads",
            "Bundle fetches by tenant ('' is the shared policy) and result: activated, "
            "candidate, unchanged, failed (the last good version kept serving).",
            ["tenant", "result"],
            registry=self.registry,
        )
        self.policy_load_seconds = Histogram(
            "aegis_policy_load_seconds",
            "Reading, verifying and compiling a new policy version, off the event loop.",
            ["tenant"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.policy_active = Gauge(
            "aegis_policy_active_info",
            "1 for the policy version each tenant is decided by ('' is the shared policy).",
            ["tenant", "version", "revision", "bundle_hash"],
            registry=self.registry,
        )
        self.evidence_errors = Counter(
            "aegis_evidence_errors",
            "Failures while recording evidence (span, log); the decision stood.",
            ["sink"],
            registry=self.registry,
        )
        self.requests_refused = Counter(
            "aegis_requests_refused",
            "Requests a door refused before a call existed, by code.",
            ["door", "code"],
            registry=self.registry,
        )
        # labels() costs more than the increment; children are cached per key.
        self._decision_children: dict[tuple[str, str, str], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def observe_decision(self, outcome: str, tool: str, door: str, seconds: float) -> None:
        key = (outcome, tool, door)
        child = self._decision_children.get(key)
        if child is None:
            if len(self._decision_children) > 10_000:
                self._decision_children.clear()
            child = self._decision_children[key] = self.decisions.labels(outcome, tool, door)
        child.inc()
        hist = self._latency_children.get(door)
        if hist is None:
            hist = self._latency_children[door] = self.latency.labels(door)
        hist.observe(seconds)
