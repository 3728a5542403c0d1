"""The JSON Schema of the policy language, generated from the models (never by hand)."""

from __future__ import annotations

from typing import Any

from aegis.policy.model import PolicyDocument


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for one policy document, as editors consume it."""
    schema = PolicyDocument.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
