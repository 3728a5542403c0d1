"""The decision API's OpenAPI 3.1 document, written by hand next to the code it describes.

Schemas are JSON Schema 2020-12 (OpenAPI 3.1 §4.8.24). ``ToolCall`` states what
:func:`aegis.core.call.parse_call` accepts (it stays the authority: anything the
schema lets through that it refuses is a 400 with the call's code), ``Decision``
what :meth:`aegis.core.decision.Decision.to_dict` returns. The tests validate
every example here, and live responses, against these schemas.
"""

from __future__ import annotations

from typing import Any

import aegis
from aegis.core.call import MAX_PARAM_DEPTH
from aegis.doors.api.encode import FAST_PATH_KEYS
from aegis.doors.api.limits import ApiLimits
from aegis.http.server import HttpLimits
from aegis.pipeline.wire import (
    APPROVAL_ID_HEADER,
    CODE_HEADER,
    DECISION_ID_HEADER,
    POLICY_VERSION_HEADER,
)

_REF = "#/components/schemas/"
_UUID7 = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
_NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
_IDENT: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 256}
_ITEM: dict[str, Any] = {"type": "string", "maxLength": 256}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], examples: dict[str, Any] | None = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = {name: {"value": value} for name, value in examples.items()}
    return {"content": {"application/json": media}}


_CALL_EXAMPLE = {
    "tenant": "acme",
    "agent_id": "finance-agent",
    "tool": "stripe.create_payment",
    "params": {"amount": 120, "currency": "USD", "payee": "acct_123"},
}
_ALLOW_EXAMPLE = {
    "decision_id": "019ab2c3-4d5e-7f60-8a1b-2c3d4e5f6071",
    "outcome": "allow",
    "code": "decision.allowed",
    "reason": "allowed by payments-small",
    "rule_ids": ["payments-small"],
    "policy_version": "2026-11-23",
    "bundle_hash": "sha256:5be0c0ffee",
    "redactions": [],
    "sanitized_params": None,
    "approval": None,
    "retry_after": None,
    "shadow": None,
    "approval_id": None,
}
_APPROVAL_EXAMPLE = {
    **_ALLOW_EXAMPLE,
    "outcome": "approval_needed",
    "code": "decision.approval_required",
    "reason": "payments above 5,000 need approval from the payments desk",
    "rule_ids": ["payments-large-approval"],
    "approval": {
        "group": "payments-desk",
        "channel": "slack:#payments-approvals",
        "ttl_seconds": 1800,
        "rule_id": "payments-large-approval",
    },
    "approval_id": "apr_019ab2c3-4d5e-7f60-8a1b-2c3d4e5f6071",
}
_FAIL_CLOSED_EXAMPLE = {
    **_ALLOW_EXAMPLE,
    "outcome": "deny",
    "code": "decision.fail_closed",
    "reason": "could not decide (pipeline.timeout); failing closed",
    "rule_ids": [],
}
_CALL_ERROR_EXAMPLE = {
    "error": {
        "type": "CallError",
        "code": "call.missing_field",
        "message": "tenant is required",
        "path": "tenant",
    }
}
_JSON_ERROR_EXAMPLE = {
    "error": {
        "type": "RequestError",
        "code": "request.invalid_json",
        "message": "invalid JSON: Expecting value at 0",
    }
}


def _schemas(limits: ApiLimits) -> dict[str, Any]:
    return {
        "ToolCall": {
            "type": "object",
            "description": "One agent -> tool call (aegis.core.call.parse_call).",
            "required": ["tenant", "agent_id", "tool"],
            "additionalProperties": False,
            "properties": {
                "tenant": _IDENT,
                "agent_id": _IDENT,
                "tool": _IDENT,
                "params": {
                    "type": "object",
                    "description": f"Plain JSON, nested at most {MAX_PARAM_DEPTH} deep.",
                },
                "kind": {"enum": ["read", "write", None]},
                "phase": {"enum": ["list", "call", None]},
                "parent_chain": {
                    "type": "array",
                    "items": _ITEM,
                    "maxItems": MAX_PARAM_DEPTH,
                    "description": "From the root agent to the direct parent.",
                },
                "agent_labels": {"type": "array", "items": _ITEM},
                "session_id": {"type": ["string", "null"], "maxLength": 256},
                "destination": {"type": ["string", "null"], "maxLength": 8192},
                "cost_estimate": {"type": ["number", "null"], "minimum": 0},
                "traceparent": {"type": ["string", "null"], "maxLength": 55},
                "tracestate": {"type": ["string", "null"], "maxLength": 512},
            },
        },
        "Decision": {
            "type": "object",
            "description": "The pipeline's answer (aegis.core.decision.Decision.to_dict).",
            "required": list(FAST_PATH_KEYS),
            "additionalProperties": False,
            "properties": {
                "decision_id": {
                    "type": "string",
                    "description": "UUIDv7 (RFC 9562); also in the span, log and audit record.",
                    "pattern": _UUID7,
                },
                "outcome": _ref("Outcome"),
                "code": {"type": "string", "pattern": "^[a-z_]+\\.[a-z_]+$"},
                "reason": {"type": "string"},
                "rule_ids": {"type": "array", "items": {"type": "string"}},
                "policy_version": {"type": "string"},
                "bundle_hash": {"type": "string"},
                "redactions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["path", "detector"],
                        "additionalProperties": False,
                        "properties": {
                            "path": {"type": "string"},
                            "detector": {"type": "string"},
                        },
                    },
                },
                "sanitized_params": {
                    "type": ["object", "null"],
                    "description": "The params with redactions applied (sanitize only).",
                },
                "approval": {
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "required": ["group", "channel", "ttl_seconds", "rule_id"],
                            "additionalProperties": False,
                            "properties": {
                                "group": {"type": "string"},
                                "channel": _NULLABLE_STRING,
                                "ttl_seconds": {"type": "integer", "minimum": 0},
                                "rule_id": {"type": "string"},
                            },
                        },
                    ]
                },
                "retry_after": {"type": ["number", "null"], "minimum": 0},
                "shadow": {
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "required": ["outcome", "rule_ids", "reason"],
                            "additionalProperties": False,
                            "properties": {
                                "outcome": _ref("Outcome"),
                                "rule_ids": {"type": "array", "items": {"type": "string"}},
                                "reason": {"type": "string"},
                                # Set when another policy version (a candidate
                                # in rollout) would have decided differently.
                                "policy_version": {"type": "string"},
                                "bundle_hash": {"type": "string"},
                            },
                        },
                    ]
                },
                "approval_id": _NULLABLE_STRING,
            },
        },
        "Outcome": {"enum": ["allow", "sanitize", "approval_needed", "deny"]},
        "ErrorDetail": {
            "type": "object",
            "required": ["type", "code", "message"],
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["RequestError", "CallError", "InternalError"]},
                "code": {
                    "type": "string",
                    "description": "Stable code: request.*, call.* (docs/errors.md).",
                    "pattern": "^[a-z_]+\\.[a-z_]+$",
                },
                "message": {"type": "string", "description": "For people; may change."},
                "path": {"type": "string", "description": "Where in the body, if known."},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {"error": _ref("ErrorDetail")},
        },
        "BatchRequest": {
            "type": "object",
            "required": ["calls"],
            "additionalProperties": False,
            "properties": {
                "calls": {
                    "type": "array",
                    "maxItems": limits.max_batch,
                    "description": "Each item is read as a ToolCall on its own; "
                    "an invalid item gets its error, the others their decisions.",
                },
            },
        },
        "BatchResult": {
            "oneOf": [
                {
                    "type": "object",
                    "required": ["index", "decision"],
                    "additionalProperties": False,
                    "properties": {
                        "index": {"type": "integer", "minimum": 0},
                        "decision": _ref("Decision"),
                    },
                },
                {
                    "type": "object",
                    "required": ["index", "error"],
                    "additionalProperties": False,
                    "properties": {
                        "index": {"type": "integer", "minimum": 0},
                        "error": {
                            **_ref("ErrorDetail"),
                            "description": "type is CallError; path is set.",
                        },
                    },
                },
            ]
        },
        "BatchResponse": {
            "type": "object",
            "required": ["results"],
            "additionalProperties": False,
            "properties": {"results": {"type": "array", "items": _ref("BatchResult")}},
        },
        "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"enum": ["ok", "ready", "not_ready"]}},
        },
    }


def _decision_headers() -> dict[str, Any]:
    string = {"schema": {"type": "string"}}
    return {
        DECISION_ID_HEADER: {"description": "The decision's id.", "required": True, **string},
        CODE_HEADER: {"description": "The decision's code.", "required": True, **string},
        POLICY_VERSION_HEADER: {
            "description": "The policy version that decided.",
            "required": True,
            **string,
        },
        APPROVAL_ID_HEADER: {"description": "approval_needed: the ticket id.", **string},
        "retry-after": {
            "description": "Limits: whole seconds to wait (RFC 9110 §10.2.3).",
            "schema": {"type": "integer", "minimum": 1},
        },
    }


def _error(description: str, examples: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, **_json(_ref("Error"), examples)}


def openapi_document(
    limits: ApiLimits | None = None, http_limits: HttpLimits | None = None
) -> dict[str, Any]:
    """The document served at ``GET /openapi.json``, for these limits."""
    limits = limits if limits is not None else ApiLimits()
    http_limits = http_limits if http_limits is not None else HttpLimits()
    refused = {
        "400": _error(
            "request.invalid_json (not UTF-8 JSON, repeated names, NaN, too deep), "
            "call.* (a call parse_call refuses; path says where), request.malformed, "
            "request.ambiguous_length, request.invalid_header.",
            {"call_error": _CALL_ERROR_EXAMPLE, "invalid_json": _JSON_ERROR_EXAMPLE},
        ),
        "413": _error(
            f"request.too_large: body over {http_limits.max_body_bytes} bytes "
            f"(batch: or more than {limits.max_batch} calls)."
        ),
        "415": _error("request.unsupported_media_type: not application/json (UTF-8)."),
        "431": _error("request.too_large: header fields too large (RFC 6585 §5)."),
    }
    # Credentials are optional at this door: the identity stage decides.
    security: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}]
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Aegis decision API",
            "version": aegis.__version__,
            "description": (
                "Ask the Aegis pipeline for a decision on one agent -> tool call. "
                "Every decided outcome, deny included, is 200: this API answers, "
                "the caller enforces. docs/doors/api.md has the details."
            ),
        },
        "paths": {
            "/v1/decide": {
                "post": {
                    "operationId": "decide",
                    "summary": "Decide one call",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        **_json(_ref("ToolCall"), {"payment": _CALL_EXAMPLE}),
                    },
                    "responses": {
                        "200": {
                            "description": "Decided (allow, sanitize, approval_needed, deny, "
                            "or a fail mode's decision.fail_open / decision.fail_closed).",
                            "headers": _decision_headers(),
                            **_json(
                                _ref("Decision"),
                                {
                                    "allow": _ALLOW_EXAMPLE,
                                    "approval_needed": _APPROVAL_EXAMPLE,
                                    "fail_closed": _FAIL_CLOSED_EXAMPLE,
                                },
                            ),
                        },
                        **refused,
                        "500": _error("pipeline.internal_error: a bug in the door."),
                    },
                }
            },
            "/v1/decide/batch": {
                "post": {
                    "operationId": "decideBatch",
                    "summary": f"Decide up to {limits.max_batch} calls, each on its own",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        **_json(_ref("BatchRequest"), {"two": {"calls": [_CALL_EXAMPLE, {}]}}),
                    },
                    "responses": {
                        "200": {
                            "description": "One result per call, in order.",
                            **_json(
                                _ref("BatchResponse"),
                                {
                                    "two": {
                                        "results": [
                                            {"index": 0, "decision": _ALLOW_EXAMPLE},
                                            {"index": 1, **_CALL_ERROR_EXAMPLE},
                                        ]
                                    }
                                },
                            ),
                        },
                        **refused,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1", **_json({"type": "object"})}
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text exposition format)",
                    "responses": {
                        "200": {
                            "description": "aegis_* metrics of this process.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: the process answers",
                    "responses": {
                        "200": {
                            "description": "Up.",
                            **_json(_ref("Status"), {"ok": {"status": "ok"}}),
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: a policy is loaded and the gateway can decide",
                    "responses": {
                        "200": {
                            "description": "Ready.",
                            **_json(_ref("Status"), {"ready": {"status": "ready"}}),
                        },
                        "503": {
                            "description": "Not ready.",
                            **_json(_ref("Status"), {"not_ready": {"status": "not_ready"}}),
                        },
                    },
                }
            },
        },
        "components": {
            "schemas": _schemas(limits),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Passed to the identity stage as the request's credentials.",
                }
            },
        },
    }
