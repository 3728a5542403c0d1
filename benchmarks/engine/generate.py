"""A deterministic generator of a large multi-tenant policy set and a mixed call stream.

The set has one document per tenant (``metadata.tenant``) plus one tenant-less
document of global rules and shared tool declarations. Every tenant's rules are
drawn from its own seeded RNG (``f"{seed}/{tenant}"``), so tenant ``t000`` is
the same in a 1-tenant set and in a 100-tenant set: that is what makes the
scaling comparison fair (same tenant, same rules, same calls; only the other
tenants' rules differ).

Each generated rule comes with two call builders: one whose call satisfies the
rule's conditions (a *hit*) and one that fails them or its agent/label scope
(a *miss*). The call stream mixes hits, misses, unknown tools, other and
unknown tenants, global-rule triggers and MCP ``tools/list`` calls.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import yaml

API_VERSION = "aegis.dev/v1"
DEFAULT_SEED = 20261123

#: Tools every tenant may use (a tenant picks 14 of them), with their kind.
SHARED_TOOLS: dict[str, str] = {
    "stripe.create_payment": "write",
    "stripe.refund": "write",
    "stripe.get_balance": "read",
    "stripe.list_charges": "read",
    "slack.post_message": "write",
    "slack.list_channels": "read",
    "slack.upload_file": "write",
    "http.request": "write",
    "http.get": "read",
    "github.create_issue": "write",
    "github.merge_pr": "write",
    "github.get_repo": "read",
    "github.delete_repo": "write",
    "db.query": "read",
    "db.execute": "write",
    "db.drop_table": "write",
    "s3.get_object": "read",
    "s3.put_object": "write",
    "s3.delete_object": "write",
    "email.send": "write",
    "email.read_inbox": "read",
    "deploy.release": "write",
    "deploy.rollback": "write",
    "deploy.status": "read",
    "crm.export_contacts": "write",
    "crm.get_contact": "read",
    "crm.update_contact": "write",
    "ehr.export_records": "write",
    "ehr.get_patient": "read",
    "jira.create_ticket": "write",
    "jira.search": "read",
    "k8s.scale": "write",
    "k8s.get_pods": "read",
    "k8s.delete_namespace": "write",
    "shell.exec": "write",
    "agents.spawn": "write",
}
SHARED_PER_TENANT = 14
#: Shared tools only global rules govern (a global unconditional deny covers them).
GLOBAL_ONLY_TOOLS = frozenset({"shell.exec"})
CUSTOM_VERBS = ("sync", "lookup", "publish", "archive", "reindex", "notify")

#: Names no policy declares or matches by exact name (some match global globs).
UNKNOWN_TOOLS = (
    *(f"mystery.tool_{k}" for k in range(20)),
    *(f"legacy{k}.delete_all" for k in range(5)),
    *(f"plugin{k}.run" for k in range(10)),
    "stripe.create_payout",
    "slack.archive_channel",
    "github.force_push",
    "db.vacuum",
    "http.patch",
)
UNKNOWN_TENANTS = tuple(f"guest-{k:02d}" for k in range(20))

CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD")
PUBLIC_HOSTS = ("api.stripe.com", "api.github.com", "hooks.slack.com", "*.salesforce.com")
BAD_DESTINATIONS = (
    "https://pastebin.com/raw/x1",
    "https://exfil.example.net/upload",
    "http://203.0.113.7:8080/drop",
    "https://transfer.sh/abc",
)
PII_TEXTS = (
    "reach me at jane.doe@example.com before noon",
    "card 4111 1111 1111 1111 exp 12/29, please charge",
    "call +1 415 555 0100 about the incident",
    "deploy finished, nothing sensitive here",
    "customer bob@example.org disputes the charge",
)
SQL_BAD = ("DROP TABLE users", "truncate table audit_log", "DELETE FROM orders WHERE 1=1")
SQL_OK = ("select id, total from orders where id = 42", "SELECT count(*) FROM sessions")

#: The rule templates of one tenant (50), shuffled per tenant.
TEMPLATE_MIX: tuple[str, ...] = (
    *("allow_range",) * 5,
    *("approval_over",) * 4,
    *("deny_env",) * 3,
    *("allow_env",) * 3,
    *("allow_channel",) * 3,
    *("deny_regex",) * 3,
    *("allow_regex",) * 3,
    *("allow_dest",) * 4,
    *("deny_dest",) * 3,
    *("deny_chain",) * 3,
    *("allow_chain",) * 3,
    *("sanitize",) * 3,
    *("allow_labels",) * 3,
    *("allow_plain",) * 4,
    *("shadow_deny",) * 3,
)
N_GLOBAL_RULES = 5

CallFields = dict[str, Any]
CallBuilder = Callable[[random.Random], CallFields]


@dataclass(frozen=True)
class RuleSpec:
    """One generated rule and how to build calls that hit or miss it."""

    rule_id: str
    template: str
    tenant: str | None
    tools: tuple[str, ...]  # concrete tool names the rule covers (to address calls)
    hit: CallBuilder
    miss: CallBuilder


@dataclass
class TenantPolicy:
    tenant: str
    tools: list[str]
    agents: list[str]
    document: dict[str, Any]
    specs: list[RuleSpec]


@dataclass
class PolicySet:
    """A generated set: documents as YAML texts, plus what the call generator needs."""

    seed: int
    tenants: list[TenantPolicy]
    global_document: dict[str, Any]
    global_specs: list[RuleSpec]
    texts: list[tuple[str, str]] = field(default_factory=list)  # (file name, YAML)

    @property
    def rule_count(self) -> int:
        return len(self.global_specs) + sum(len(t.specs) for t in self.tenants)

    def summary(self) -> dict[str, Any]:
        specs = [s for t in self.tenants for s in t.specs] + self.global_specs
        rules = [r for t in self.tenants for r in t.document["rules"]]
        rules += self.global_document["rules"]
        globbed = sum(1 for r in rules if any("*" in p for p in r["match"].get("tools", ["*"])))
        tools = {x for t in self.tenants for x in t.tools}
        return {
            "tenants": len(self.tenants),
            "documents": len(self.texts),
            "rules": len(rules),
            "global_rules": len(self.global_specs),
            "rules_per_tenant": sorted({len(t.specs) for t in self.tenants}),
            "tools_per_tenant": len(self.tenants[0].tools) if self.tenants else 0,
            "distinct_tools": len(tools),
            "rules_with_tool_globs": globbed,
            "shadow_rules": sum(1 for r in rules if r.get("mode") == "shadow"),
            "effects": dict(sorted(Counter(r["effect"] for r in rules).items())),
            "templates": dict(sorted(Counter(s.template for s in specs).items())),
            "yaml_bytes": sum(len(text.encode()) for _, text in self.texts),
        }


class _NoAliasDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Policies refuse YAML anchors and aliases; never emit them."""

    def ignore_aliases(self, data: Any) -> bool:  # noqa: ARG002
        return True


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True)


# -- rule templates -------------------------------------------------------------------


@dataclass
class _Ctx:
    rng: random.Random
    tenant: str
    agents: list[str]

    def agent(self, rng: random.Random) -> str:
        return rng.choice(self.agents)


Template = Callable[[_Ctx], tuple[dict[str, Any], CallBuilder, CallBuilder]]


def _t_allow_range(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    limit = c.rng.choice((500, 1000, 5000, 10000))
    cur = sorted(c.rng.sample(CURRENCIES, 3))
    body = {
        "when": [
            {"param": "amount", "gt": 0, "lte": limit},
            {"param": "currency", "in": cur},
        ],
        "effect": "allow",
    }

    def hit(r: random.Random) -> CallFields:
        amount = r.choice((r.randint(1, limit), round(r.uniform(0.01, limit), 2)))
        params = {"amount": amount, "currency": r.choice(cur)}
        return {"agent_id": c.agent(r), "params": params}

    def miss(r: random.Random) -> CallFields:
        params: dict[str, Any] = r.choice(
            (
                {"amount": limit + r.randint(1, 10_000), "currency": cur[0]},
                {"amount": str(r.randint(1, limit)), "currency": cur[0]},
                {"amount": -r.randint(1, 50), "currency": cur[0]},
                {"amount": 10, "currency": next(x for x in CURRENCIES if x not in cur)},
                {"currency": cur[0]},
            )
        )
        return {"agent_id": c.agent(r), "params": params}

    return body, hit, miss


def _t_approval_over(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    limit = c.rng.choice((1000, 5000, 25000))
    body = {
        "when": [{"param": "amount", "gt": limit}],
        "effect": "approval_needed",
        "reason": f"amounts above {limit} need a human",
        "approval": {
            "group": f"{c.tenant}-approvers",
            "channel": f"slack:#{c.tenant}-approvals",
            "ttl": c.rng.choice(("15m", "30m", "1h")),
        },
    }

    def hit(r: random.Random) -> CallFields:
        params = {"amount": limit + r.randint(1, 100_000), "currency": r.choice(CURRENCIES)}
        return {"agent_id": c.agent(r), "params": params}

    def miss(r: random.Random) -> CallFields:
        return {"agent_id": c.agent(r), "params": {"amount": r.randint(0, limit)}}

    return body, hit, miss


def _t_env(effect: str) -> Template:
    def make(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
        prod = ["prod", "production"]
        lower = ["dev", "staging", "test"]
        body = {
            "when": [{"param": "env", "in": prod if effect == "deny" else lower}],
            "effect": effect,
        }
        if effect == "deny":
            body["reason"] = "agents do not touch production"
        yes, no = (prod, lower) if effect == "deny" else (lower, prod)

        def hit(r: random.Random) -> CallFields:
            return {"agent_id": c.agent(r), "params": {"env": r.choice(yes), "ref": "v1.2.3"}}

        def miss(r: random.Random) -> CallFields:
            env: Any = r.choice((*no, 7, None))
            return {"agent_id": c.agent(r), "params": {"env": env}}

        return body, hit, miss

    return make


def _t_allow_channel(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    channels = [f"#{c.tenant}-ops", f"#{c.tenant}-alerts", "#general"]
    body = {"when": [{"param": "channel", "in": channels}], "effect": "allow"}

    def hit(r: random.Random) -> CallFields:
        return {"agent_id": c.agent(r), "params": {"channel": r.choice(channels), "text": "ok"}}

    def miss(r: random.Random) -> CallFields:
        return {"agent_id": c.agent(r), "params": {"channel": "#random", "text": "hi"}}

    return body, hit, miss


def _t_deny_regex(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    body = {
        "when": [
            {"param": "query", "matches": r"(?i)\b(drop|truncate)\s+table\b|\bdelete\s+from\b"}
        ],
        "effect": "deny",
        "reason": "destructive SQL is refused",
    }

    def hit(r: random.Random) -> CallFields:
        return {"agent_id": c.agent(r), "params": {"query": r.choice(SQL_BAD)}}

    def miss(r: random.Random) -> CallFields:
        return {"agent_id": c.agent(r), "params": {"query": r.choice(SQL_OK)}}

    return body, hit, miss


def _t_allow_regex(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    body = {
        "when": [{"param": "path", "matches": f"^/data/{c.tenant}/[a-z0-9_/-]+$"}],
        "effect": "allow",
    }

    def hit(r: random.Random) -> CallFields:
        path = f"/data/{c.tenant}/reports/q{r.randint(1, 4)}-{r.randint(2020, 2026)}"
        return {"agent_id": c.agent(r), "params": {"path": path}}

    def miss(r: random.Random) -> CallFields:
        path = r.choice(("/etc/passwd", f"/data/{c.tenant}/../../secrets", "/data/other/x"))
        return {"agent_id": c.agent(r), "params": {"path": path}}

    return body, hit, miss


def _hosts(c: _Ctx) -> list[str]:
    return [f"api.{c.tenant}.example", f"*.{c.tenant}.example", c.rng.choice(PUBLIC_HOSTS)]


def _good_destination(c: _Ctx, r: random.Random) -> str:
    return r.choice(
        (
            f"https://api.{c.tenant}.example/v1/items?page={r.randint(1, 9)}",
            f"https://files.{c.tenant}.example/upload",
            f"api.{c.tenant}.example:443",
        )
    )


def _destinations(c: _Ctx) -> tuple[CallBuilder, CallBuilder]:
    """Calls to one of the tenant's own hosts, and calls to somewhere else."""

    def good(r: random.Random) -> CallFields:
        return {"agent_id": c.agent(r), "params": {}, "destination": _good_destination(c, r)}

    def bad(r: random.Random) -> CallFields:
        return {"agent_id": c.agent(r), "params": {}, "destination": r.choice(BAD_DESTINATIONS)}

    return good, bad


def _t_allow_dest(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    body = {"when": [{"destination": {"host_in": _hosts(c)}}], "effect": "allow"}
    good, bad = _destinations(c)
    return body, good, bad


def _t_deny_dest(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    body = {
        "when": [{"destination": {"host_not_in": _hosts(c)}}],
        "effect": "deny",
        "reason": "destination is not on the egress allowlist",
    }
    good, bad = _destinations(c)
    return body, bad, good


def _t_deny_chain(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    depth = c.rng.choice((2, 3, 4))
    body = {
        "when": [{"chain": {"depth_gte": depth}}],
        "effect": "deny",
        "reason": f"delegation deeper than {depth - 1} is refused",
    }
    chain = [f"{c.tenant}-planner", *(f"{c.tenant}-sub-{k}" for k in range(6))]

    def hit(r: random.Random) -> CallFields:
        n = r.randint(depth, depth + 2)
        return {"agent_id": c.agent(r), "params": {}, "parent_chain": chain[:n]}

    def miss(r: random.Random) -> CallFields:
        return {"agent_id": c.agent(r), "params": {}, "parent_chain": chain[: depth - 1]}

    return body, hit, miss


def _t_allow_chain(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    planner, worker = f"{c.tenant}-planner", f"{c.tenant}-worker"
    body = {
        "match": {"agents": [worker]},
        "when": [{"chain": {"parent_in": [planner], "depth_lte": 2}}],
        "effect": "allow",
    }

    def hit(r: random.Random) -> CallFields:
        chain = r.choice(([planner], [f"{c.tenant}-root", planner]))
        return {"agent_id": worker, "params": {}, "parent_chain": chain}

    def miss(r: random.Random) -> CallFields:
        if r.random() < 0.5:
            return {"agent_id": worker, "params": {}, "parent_chain": [f"{c.tenant}-rogue"]}
        return {"agent_id": c.agent(r), "params": {}, "parent_chain": [planner]}

    return body, hit, miss


def _t_sanitize(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    channels = [f"#{c.tenant}-support", f"#{c.tenant}-billing"]
    detectors = sorted(c.rng.sample(("email", "phone", "credit_card", "us_ssn", "iban"), 3))
    body = {
        "when": [{"param": "channel", "in": channels}],
        "effect": "sanitize",
        "sanitize": {"detectors": detectors, "scan": ["text"]},
    }

    def hit(r: random.Random) -> CallFields:
        params = {"channel": r.choice(channels), "text": r.choice(PII_TEXTS)}
        return {"agent_id": c.agent(r), "params": params}

    def miss(r: random.Random) -> CallFields:
        return {"agent_id": c.agent(r), "params": {"channel": "#public", "text": PII_TEXTS[0]}}

    return body, hit, miss


def _t_allow_labels(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    limit = c.rng.choice((100, 250, 1000))
    body = {
        "match": {"labels": ["finance", "payments-ops"]},
        "when": [{"param": "amount", "lte": limit}],
        "effect": "allow",
    }

    def hit(r: random.Random) -> CallFields:
        labels = r.choice((["finance"], ["payments-ops", "eu"]))
        params = {"amount": r.randint(0, limit)}
        return {"agent_id": c.agent(r), "params": params, "agent_labels": labels}

    def miss(r: random.Random) -> CallFields:
        params = {"amount": r.randint(0, limit)}
        return {"agent_id": c.agent(r), "params": params, "agent_labels": ["marketing"]}

    return body, hit, miss


def _t_allow_plain(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    body = {"match": {"agents": [f"{c.tenant}-agent-*"]}, "effect": "allow"}

    def hit(r: random.Random) -> CallFields:
        return {"agent_id": c.agent(r), "params": {"id": r.randint(1, 10**6)}}

    def miss(r: random.Random) -> CallFields:
        return {"agent_id": f"{c.tenant}-intern", "params": {"id": r.randint(1, 10**6)}}

    return body, hit, miss


def _t_shadow_deny(c: _Ctx) -> tuple[dict[str, Any], CallBuilder, CallBuilder]:
    limit = c.rng.choice((50, 200))
    body = {
        "mode": "shadow",
        "when": [{"param": "amount", "gt": limit}],
        "effect": "deny",
        "reason": f"trial: amounts above {limit} would be denied",
    }

    def hit(r: random.Random) -> CallFields:
        params = {"amount": limit + r.randint(1, 500), "currency": "USD"}
        return {"agent_id": c.agent(r), "params": params}

    def miss(r: random.Random) -> CallFields:
        return {"agent_id": c.agent(r), "params": {"amount": r.randint(1, limit)}}

    return body, hit, miss


TEMPLATES: dict[str, Template] = {
    "allow_range": _t_allow_range,
    "approval_over": _t_approval_over,
    "deny_env": _t_env("deny"),
    "allow_env": _t_env("allow"),
    "allow_channel": _t_allow_channel,
    "deny_regex": _t_deny_regex,
    "allow_regex": _t_allow_regex,
    "allow_dest": _t_allow_dest,
    "deny_dest": _t_deny_dest,
    "deny_chain": _t_deny_chain,
    "allow_chain": _t_allow_chain,
    "sanitize": _t_sanitize,
    "allow_labels": _t_allow_labels,
    "allow_plain": _t_allow_plain,
    "shadow_deny": _t_shadow_deny,
}


# -- documents ------------------------------------------------------------------------


def _pick_tools(rng: random.Random, tools: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """Tool patterns for one rule (mostly exact names, some globs) and the tools covered."""
    roll = rng.random()
    if roll < 0.70:
        tool = rng.choice(tools)
        return [tool], (tool,)
    if roll < 0.88:
        service = rng.choice(tools).rsplit(".", 1)[0]
        pattern = f"{service}.*"
        return [pattern], tuple(t for t in tools if fnmatchcase(t, pattern))
    pair = sorted(rng.sample(tools, 2))
    return pair, tuple(pair)


def generate_tenant(seed: int, index: int, n_rules: int) -> TenantPolicy:
    tenant = f"t{index:03d}"
    rng = random.Random(f"{seed}/{tenant}")
    pool = sorted(set(SHARED_TOOLS) - GLOBAL_ONLY_TOOLS)
    shared = sorted(rng.sample(pool, SHARED_PER_TENANT))
    custom = [f"{tenant}-int.{verb}" for verb in CUSTOM_VERBS]
    tools = shared + custom
    agents = [f"{tenant}-agent-{k}" for k in range(5)]
    mix = list(TEMPLATE_MIX)
    rng.shuffle(mix)
    ctx = _Ctx(rng, tenant, agents)
    rules: list[dict[str, Any]] = []
    specs: list[RuleSpec] = []
    for k, template in enumerate(mix[:n_rules]):
        patterns, covered = _pick_tools(rng, tools)
        body, hit, miss = TEMPLATES[template](ctx)
        rule_id = f"{tenant}-r{k:02d}-{template.replace('_', '-')}"
        rule: dict[str, Any] = {"id": rule_id}
        if "mode" in body:
            rule["mode"] = body.pop("mode")
        rule["match"] = {"tools": patterns, **body.pop("match", {})}
        rule.update(body)
        rules.append(rule)
        specs.append(RuleSpec(rule_id, template, tenant, covered, hit, miss))
    document = {
        "apiVersion": API_VERSION,
        "kind": "Policy",
        "metadata": {"name": f"{tenant}-policy", "tenant": tenant, "version": "bench-1"},
        "tools": [
            {"name": t, "kind": "write" if verb in ("sync", "publish", "archive") else "read"}
            for t, verb in zip(custom, CUSTOM_VERBS, strict=True)
        ],
        "rules": rules,
    }
    return TenantPolicy(tenant, tools, agents, document, specs)


def _global_rules() -> tuple[list[dict[str, Any]], list[RuleSpec]]:
    """Tenant-less rules: they apply to every tenant's calls."""

    def agent(r: random.Random) -> str:
        return f"global-agent-{r.randint(0, 9)}"

    rules: list[dict[str, Any]] = [
        {
            "id": "global-no-shell",
            "match": {"tools": ["shell.exec"]},
            "effect": "deny",
            "reason": "no agent runs shell commands",
        },
        {
            "id": "global-deep-destructive",
            "match": {"tools": ["*.delete_*", "*.drop_*"]},
            "when": [{"chain": {"depth_gte": 2}}],
            "effect": "deny",
            "reason": "destructive calls are not delegated twice",
        },
        {
            "id": "global-teardown-approval",
            "match": {"tools": ["k8s.delete_namespace", "github.delete_repo"]},
            "effect": "approval_needed",
            "approval": {"group": "platform-oncall", "channel": "slack:#oncall", "ttl": "1h"},
        },
        {
            "id": "global-ssrf-guard",
            "match": {"tools": ["*"]},
            "when": [{"destination": {"ip_in": ["169.254.0.0/16", "10.0.0.0/8", "127.0.0.0/8"]}}],
            "effect": "deny",
            "reason": "metadata and internal addresses are off limits",
        },
        {
            "id": "global-plain-http-trial",
            "mode": "shadow",
            "match": {"tools": ["http.*"]},
            "when": [{"destination": {"scheme_in": ["http"]}}],
            "effect": "deny",
            "reason": "trial: plain http would be refused",
        },
    ]
    specs = [
        RuleSpec(
            "global-no-shell",
            "global",
            None,
            ("shell.exec",),
            lambda r: {"agent_id": agent(r), "params": {"cmd": "rm -rf /tmp/x"}},
            lambda r: {"agent_id": agent(r), "params": {}},
        ),
        RuleSpec(
            "global-deep-destructive",
            "global",
            None,
            ("s3.delete_object", "db.drop_table", "legacy0.delete_all"),
            lambda r: {"agent_id": agent(r), "params": {}, "parent_chain": ["root", "mid"]},
            lambda r: {"agent_id": agent(r), "params": {}, "parent_chain": []},
        ),
        RuleSpec(
            "global-teardown-approval",
            "global",
            None,
            ("k8s.delete_namespace", "github.delete_repo"),
            lambda r: {"agent_id": agent(r), "params": {"name": f"ns-{r.randint(1, 99)}"}},
            lambda r: {"agent_id": agent(r), "params": {}},
        ),
        RuleSpec(
            "global-ssrf-guard",
            "global",
            None,
            ("http.request", "http.get", "mystery.tool_1"),
            lambda r: {
                "agent_id": agent(r),
                "params": {},
                "destination": r.choice(
                    ("http://169.254.169.254/latest/meta-data/", "http://10.1.2.3:8080/admin")
                ),
            },
            lambda r: {"agent_id": agent(r), "params": {}, "destination": "https://api.github.com"},
        ),
        RuleSpec(
            "global-plain-http-trial",
            "global",
            None,
            ("http.request", "http.get"),
            lambda r: {"agent_id": agent(r), "params": {}, "destination": "http://example.com/x"},
            lambda r: {"agent_id": agent(r), "params": {}, "destination": "https://example.com"},
        ),
    ]
    assert len(rules) == len(specs) == N_GLOBAL_RULES
    return rules, specs


def generate_policy_set(n_tenants: int, total_rules: int, seed: int = DEFAULT_SEED) -> PolicySet:
    """``n_tenants`` tenant documents plus the global one, ``total_rules`` rules in all.

    Tenant rule budgets are as even as possible, larger first, capped at
    ``len(TEMPLATE_MIX)`` (50); tenant ``t000`` gets the same rules in any set
    where its budget is the same.
    """
    tenant_total = total_rules - N_GLOBAL_RULES
    base, extra = divmod(tenant_total, n_tenants)
    if base + (1 if extra else 0) > len(TEMPLATE_MIX):
        raise ValueError(f"at most {len(TEMPLATE_MIX)} rules per tenant")
    tenants = [generate_tenant(seed, i, base + (1 if i < extra else 0)) for i in range(n_tenants)]
    global_rules, global_specs = _global_rules()
    global_document = {
        "apiVersion": API_VERSION,
        "kind": "Policy",
        "metadata": {"name": "global", "version": "bench-1"},
        "tools": [{"name": name, "kind": kind} for name, kind in SHARED_TOOLS.items()],
        "rules": global_rules,
    }
    pset = PolicySet(seed, tenants, global_document, global_specs)
    pset.texts.append(("generated/00-global.yaml", to_yaml(global_document)))
    pset.texts.extend((f"generated/{t.tenant}.yaml", to_yaml(t.document)) for t in tenants)
    return pset


# -- the call stream --------------------------------------------------------------------

#: Share of each kind of call in the stream.
CALL_MIX: tuple[tuple[str, float], ...] = (
    ("rule_hit", 0.55),
    ("rule_miss", 0.17),
    ("unknown_tool", 0.07),
    ("other_tenant", 0.10),
    ("global_rule", 0.07),
    ("list_phase", 0.04),
)


def generate_calls(pset: PolicySet, n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` calls as (category, JSON call) pairs, in a deterministic order."""
    rng = random.Random(f"{seed}/calls/{len(pset.tenants)}")
    categories = [c for c, _ in CALL_MIX]
    weights = [w for _, w in CALL_MIX]
    out: list[tuple[str, dict[str, Any]]] = []
    for category in rng.choices(categories, weights, k=n):
        tp = rng.choice(pset.tenants)
        call: dict[str, Any]
        if category in ("rule_hit", "rule_miss", "other_tenant"):
            spec = rng.choice(tp.specs)
            build = spec.miss if category == "rule_miss" else spec.hit
            call = {"tenant": tp.tenant, "tool": rng.choice(spec.tools), **build(rng)}
            if category == "other_tenant":
                others = [t.tenant for t in pset.tenants if t is not tp]
                use_known = others and rng.random() < 0.5
                call["tenant"] = rng.choice(others) if use_known else rng.choice(UNKNOWN_TENANTS)
        elif category == "unknown_tool":
            call = {
                "tenant": tp.tenant,
                "tool": rng.choice(UNKNOWN_TOOLS),
                "agent_id": rng.choice(tp.agents),
                "params": {"x": rng.randint(0, 9)},
            }
        elif category == "global_rule":
            spec = rng.choice(pset.global_specs)
            build = spec.hit if rng.random() < 0.8 else spec.miss
            call = {"tenant": tp.tenant, "tool": rng.choice(spec.tools), **build(rng)}
        else:  # an MCP tools/list call: no params
            call = {
                "tenant": tp.tenant,
                "tool": rng.choice(tp.tools),
                "agent_id": rng.choice(tp.agents),
                "phase": "list",
            }
        out.append((category, call))
    return out
