"""The OpenAPI 3.1 document of the control-plane API."""

from __future__ import annotations

from typing import Any

__all__ = ["control_openapi_document"]

_JSON = "application/json"
_ERROR_CODES = {
    "400": "control.invalid: a malformed body or value, or a body 'tenant' unlike the path's",
    "401": "control.unauthenticated: no valid operator bearer token",
    "403": "control.forbidden: the tenant is not held, or the role may not do this",
    "404": "control.not_found: no such agent (in a held tenant), or feature not configured",
    "409": "control.conflict: the agent exists already, or its state forbids this",
    "428": "control.confirmation_required: a mass revocation without confirm and reason",
    "rollout404": "rollout.unknown_tenant / rollout.unknown_version, or control.not_found "
    "when the gateway serves no bundles",
    "rollout409": "rollout.invalid: nothing to promote, already active, a bad share or stage, "
    "no earlier version, or a version that no longer loads",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(
    summary: str,
    role: str,
    ok: str,
    schema: str,
    *,
    body: str | None = None,
    errors: tuple[str, ...] = ("401", "403"),
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        ok: {"description": "success", "content": {_JSON: {"schema": _ref(schema)}}}
    }
    for code in errors:
        responses[code.removeprefix("rollout")] = {
            "description": _ERROR_CODES[code],
            "content": {_JSON: {"schema": _ref("Error")}},
        }
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Roles: {role}.",
        "responses": responses,
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {_JSON: {"schema": _ref(body)}}}
    return op


_TENANT = {"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"}}
_AGENT = {"name": "agent_id", "in": "path", "required": True, "schema": {"type": "string"}}
_STRS = {"type": "array", "items": {"type": "string"}}
_READ = "any (auditor, policy_owner, soc_analyst, platform_engineer)"
_SOC = "soc_analyst, platform_engineer"


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required)}


_SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "error": _obj(
                {
                    "type": {"type": "string"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
                ("type", "code", "message"),
            )
        },
        ("error",),
    ),
    "Operator": _obj(
        {"name": {"type": "string"}, "role": {"type": "string"}, "tenants": _STRS},
        ("name", "role", "tenants"),
    ),
    "Agent": _obj(
        {
            "tenant": {"type": "string"},
            "agent_id": {"type": "string"},
            "owner": {"type": "string"},
            "labels": _STRS,
            "scopes": _STRS,
            "may_spawn": _STRS,
            "status": {"enum": ["active", "suspended", "revoked"]},
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
        },
        ("tenant", "agent_id", "owner", "status"),
    ),
    "NewAgent": _obj(
        {
            "agent_id": {"type": "string"},
            "owner": {"type": "string"},
            "labels": _STRS,
            "scopes": _STRS,
            "may_spawn": _STRS,
        },
        ("agent_id", "owner"),
    ),
    "Agents": _obj({"agents": {"type": "array", "items": _ref("Agent")}}, ("agents",)),
    "MaySpawn": _obj({"may_spawn": _STRS}, ("may_spawn",)),
    "Revocation": _obj(
        {
            "id": {"type": "string"},
            "kind": {"enum": ["jti", "session", "agent", "tool_scope", "tenant", "global"]},
            "tenant": {"type": "string"},
            "target": {"type": "string"},
            "mode": {"enum": ["revoked", "suspended"]},
            "reason": {"type": "string"},
            "actor": {"type": "string"},
            "at": {"type": "number"},
            "until": {"type": ["number", "null"]},
            "cascade": {"type": "boolean"},
            "cascaded": _STRS,
        },
        ("id", "kind", "tenant", "target", "mode", "reason", "actor", "at"),
    ),
    "RevocationResult": _obj({"revocation": _ref("Revocation")}, ("revocation",)),
    "Revocations": _obj(
        {"revocations": {"type": "array", "items": _ref("Revocation")}}, ("revocations",)
    ),
    "Resumed": _obj({"resumed": {"type": "array", "items": _ref("Revocation")}}, ("resumed",)),
    "Suspend": _obj({"reason": {"type": "string"}, "cascade": {"type": "boolean"}}, ("reason",)),
    "Resume": _obj({"reason": {"type": "string"}}, ("reason",)),
    "NewRevocation": _obj(
        {
            "kind": {"enum": ["jti", "session", "agent", "tool_scope", "tenant"]},
            "target": {"type": "string"},
            "cascade": {"type": "boolean"},
            "reason": {"type": "string"},
            "confirm": {"type": "boolean"},
        },
        ("kind", "reason"),
    ),
    "GlobalRevocation": _obj(
        {"kind": {"const": "global"}, "reason": {"type": "string"}, "confirm": {"const": True}},
        ("kind", "reason", "confirm"),
    ),
    "Action": _obj(
        {
            "id": {"type": "string"},
            "action": {"enum": ["revoke", "suspend", "resume"]},
            "revocation": _ref("Revocation"),
            "actor": {"type": "string"},
            "reason": {"type": "string"},
            "at": {"type": "number"},
            "confirmed": {"type": "boolean"},
        },
        ("id", "action", "revocation", "actor", "reason", "at"),
    ),
    "Actions": _obj({"actions": {"type": "array", "items": _ref("Action")}}, ("actions",)),
    "PolicyVersion": _obj(
        {
            "id": {"type": "string", "description": "bundle id: sha256 of the policy files"},
            "revision": {"type": "string"},
            "policy_version": {"type": "string"},
            "rules": {"type": "integer"},
            "origin": {"type": "string"},
            "loaded_at": {"type": "string"},
        },
        ("id", "revision", "policy_version"),
    ),
    "PolicySlot": _obj(
        {
            "tenant": {"type": "string", "description": "'' is the shared policy"},
            "source": {"type": ["string", "null"]},
            "active": {"oneOf": [{"type": "null"}, _ref("PolicyVersion")]},
            "candidate": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "allOf": [_ref("PolicyVersion")],
                        "properties": {
                            "stage": {"enum": ["shadow", "canary"]},
                            "percent": {"type": "number"},
                            "by": {"enum": ["agent", "call"]},
                        },
                    },
                ]
            },
            "pinned": {"type": "boolean"},
            "versions": {"type": "array", "items": _ref("PolicyVersion")},
            "reloads": {"type": "object", "additionalProperties": {"type": "integer"}},
            "consecutive_failures": {"type": "integer"},
            "last_error": {"type": ["object", "null"]},
            "last_fetch_at": {"type": ["string", "null"]},
        },
        ("tenant", "active", "candidate", "pinned", "versions", "reloads"),
    ),
    "PolicySlots": _obj({"slots": {"type": "array", "items": _ref("PolicySlot")}}, ("slots",)),
    "Promote": _obj(
        {
            "stage": {"enum": ["shadow", "canary", "enforce"]},
            "version": {"type": "string", "description": "default: the candidate"},
            "percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
            "by": {"enum": ["agent", "call"]},
            "reason": {"type": "string"},
        },
        ("stage", "reason"),
    ),
    "Rollback": _obj(
        {
            "to": {"type": "string", "description": "default: the previous active version"},
            "reason": {"type": "string"},
        },
        ("reason",),
    ),
    "MintRequest": _obj(
        {
            "scopes": _STRS,
            "session_id": {"type": "string"},
            "parent_chain": _STRS,
            "lifetime_seconds": {"type": "integer", "minimum": 1},
        },
        ("scopes",),
    ),
    "Minted": _obj(
        {"token": {"type": "string"}, "claims": {"type": "object"}}, ("token", "claims")
    ),
    "InspectRequest": _obj({"token": {"type": "string"}}, ("token",)),
    "ExchangeRequest": _obj(
        {
            "token": {"type": "string", "description": "the parent agent's token"},
            "child_agent_id": {"type": "string"},
            "scopes": _STRS,
        },
        ("token", "child_agent_id"),
    ),
    "Inspection": _obj(
        {"valid": {"type": "boolean"}, "claims": {"type": "object"}, "reason": {"type": "string"}},
        ("valid",),
    ),
    "OpenApi": {"type": "object"},
}


def control_openapi_document() -> dict[str, Any]:
    """The document served at ``GET /v1/control/openapi.json``."""
    t = "/v1/control/tenants/{tenant}"
    a = t + "/agents/{agent_id}"
    e4 = ("400", "401", "403", "404")
    paths: dict[str, Any] = {
        "/v1/control/whoami": {"get": _op("The calling operator", _READ, "200", "Operator")},
        "/v1/control/openapi.json": {"get": _op("This document", _READ, "200", "OpenApi")},
        "/v1/control/revocations": {
            "post": _op(
                "Revoke every call of every tenant",
                "soc_analyst, platform_engineer holding '*'",
                "201",
                "RevocationResult",
                body="GlobalRevocation",
                errors=("400", "401", "403", "428"),
            )
        },
        t + "/agents": {
            "parameters": [_TENANT],
            "get": _op("The tenant's agents", _READ, "200", "Agents"),
            "post": _op(
                "Register an agent",
                "platform_engineer",
                "201",
                "Agent",
                body="NewAgent",
                errors=("400", "401", "403", "409"),
            ),
        },
        a: {
            "parameters": [_TENANT, _AGENT],
            "get": _op("One agent", _READ, "200", "Agent", errors=("401", "403", "404")),
        },
        a + "/suspend": {
            "parameters": [_TENANT, _AGENT],
            "post": _op(
                "Suspend an agent", _SOC, "200", "RevocationResult", body="Suspend", errors=e4
            ),
        },
        a + "/resume": {
            "parameters": [_TENANT, _AGENT],
            "post": _op(
                "Lift the agent's suspensions",
                _SOC,
                "200",
                "Resumed",
                body="Resume",
                errors=(*e4, "409"),
            ),
        },
        a + "/may_spawn": {
            "parameters": [_TENANT, _AGENT],
            "put": _op(
                "Replace the agents this agent may spawn",
                "platform_engineer",
                "200",
                "Agent",
                body="MaySpawn",
                errors=e4,
            ),
        },
        a + "/tokens": {
            "parameters": [_TENANT, _AGENT],
            "post": _op(
                "Mint an agent token (404 when no minter is configured)",
                "platform_engineer",
                "201",
                "Minted",
                body="MintRequest",
                errors=(*e4, "409"),
            ),
        },
        t + "/revocations": {
            "parameters": [_TENANT],
            "get": _op("The tenant's active revocations", _READ, "200", "Revocations"),
            "post": _op(
                "Revoke (scoped, or the whole tenant with confirm and reason)",
                _SOC,
                "201",
                "RevocationResult",
                body="NewRevocation",
                errors=("400", "401", "403", "428"),
            ),
        },
        t + "/actions": {
            "parameters": [_TENANT],
            "get": _op(
                "The tenant's kill-switch trail: who, what, why, when", _READ, "200", "Actions"
            ),
        },
        t + "/tokens/inspect": {
            "parameters": [_TENANT],
            "post": _op(
                "Verify a token; one of another tenant is reported as 'other tenant'",
                _SOC,
                "200",
                "Inspection",
                body="InspectRequest",
                errors=e4,
            ),
        },
        t + "/tokens/exchange": {
            "parameters": [_TENANT],
            "post": _op(
                "Delegate: the parent agent's token -> a token for a child it may spawn, "
                "scopes only narrowed, chain one longer (404 when no minter is configured)",
                "platform_engineer",
                "201",
                "Minted",
                body="ExchangeRequest",
                errors=(*e4, "409"),
            ),
        },
    }
    rollout = "policy_owner, platform_engineer"
    rollout_errors = ("400", "401", "403", "rollout404", "rollout409")
    for prefix, params, who in (
        ("/v1/control/policy", [], f"{rollout} holding '*'"),
        (t + "/policy", [_TENANT], rollout),
    ):
        scope = "the shared policy" if not params else "the tenant's own bundle"
        paths[prefix] = {
            "parameters": params,
            "get": _op(
                f"Versions of {scope}: active, candidate, kept versions, reload counts"
                + ("" if params else " (and of each tenant the operator holds)"),
                _READ,
                "200",
                "PolicySlots",
                errors=("401", "403", "rollout404"),
            ),
        }
        paths[prefix + "/promote"] = {
            "parameters": params,
            "post": _op(
                f"Move a version of {scope} to shadow, canary or enforce",
                who,
                "200",
                "PolicySlot",
                body="Promote",
                errors=rollout_errors,
            ),
        }
        paths[prefix + "/rollback"] = {
            "parameters": params,
            "post": _op(
                f"Make an earlier version of {scope} active now and pin it",
                who,
                "200",
                "PolicySlot",
                body="Rollback",
                errors=rollout_errors,
            ),
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Aegis control plane",
            "version": "1",
            "description": "Operator API: agents, tokens, revocations, policy versions. "
            "Every call is "
            "limited to the operator's tenants; every mutation is recorded.",
        },
        "security": [{"operatorToken": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"operatorToken": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
    }
