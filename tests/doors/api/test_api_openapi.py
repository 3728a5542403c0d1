"""GET /openapi.json: a well-formed OpenAPI 3.1 document whose schemas describe what
the API really sends. ``openapi-spec-validator`` is not a dependency; the structure
is checked here, and examples and live responses are validated against the schemas
with ``jsonschema`` (JSON Schema 2020-12, the dialect of OpenAPI 3.1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aegis.doors.api import ApiLimits, openapi_document
from aegis.http.server import HttpLimits
from aegis.pipeline import Pipeline
from aegis.policy import CompiledPolicy

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

DOC_URI = "urn:aegis:openapi"
ENDPOINTS = {
    "/v1/decide": {"post"},
    "/v1/decide/batch": {"post"},
    "/openapi.json": {"get"},
    "/metrics": {"get"},
    "/healthz": {"get"},
    "/readyz": {"get"},
}
DOC = openapi_document()


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    resource = referencing.Resource.from_contents(
        doc, default_specification=referencing.jsonschema.DRAFT202012
    )
    registry = referencing.Registry().with_resource(DOC_URI, resource)
    # Refs inside the document ("#/components/...") resolve against it.
    wrapped = {"$id": DOC_URI + "-probe", "$ref": _absolute(schema)}
    return jsonschema.Draft202012Validator(wrapped, registry=registry)


def _absolute(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    assert isinstance(ref, str) and ref.startswith("#/"), schema
    return DOC_URI + ref


def schema_validator(name: str) -> Any:
    return validator(DOC, {"$ref": f"#/components/schemas/{name}"})


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


def resolve_pointer(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_document_structure() -> None:
    assert DOC["openapi"] == "3.1.0"
    assert DOC["jsonSchemaDialect"] == "https://json-schema.org/draft/2020-12/schema"
    assert DOC["info"]["title"] and DOC["info"]["version"]
    assert {path: set(ops) for path, ops in DOC["paths"].items()} == ENDPOINTS
    operation_ids = []
    for ops in DOC["paths"].values():
        for op in ops.values():
            operation_ids.append(op["operationId"])
            assert op["summary"]
            assert op["responses"], op["operationId"]
            for status, response in op["responses"].items():
                assert status.isdigit() and 100 <= int(status) <= 599
                assert response["description"]
    assert len(operation_ids) == len(set(operation_ids))
    decide = DOC["paths"]["/v1/decide"]["post"]
    assert set(decide["responses"]) >= {"200", "400", "413", "415"}
    assert set(decide["responses"]["200"]["headers"]) >= {
        "x-aegis-decision-id",
        "x-aegis-code",
        "x-aegis-policy-version",
    }
    assert DOC["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_every_ref_resolves() -> None:
    refs = [node["$ref"] for _, node in walk(DOC) if isinstance(node, dict) and "$ref" in node]
    assert len(refs) > 10
    for ref in refs:
        assert resolve_pointer(DOC, ref) is not None, ref


@pytest.mark.parametrize("name", sorted(DOC["components"]["schemas"]))
def test_component_schemas_are_valid_json_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(DOC["components"]["schemas"][name])


def _examples() -> list[tuple[str, dict[str, Any], Any]]:
    found = []
    for path, node in walk(DOC["paths"]):
        if isinstance(node, dict) and "schema" in node and "examples" in node:
            for name, example in node["examples"].items():
                found.append((f"{path}:{name}", node["schema"], example["value"]))
    return found


EXAMPLES = _examples()


def test_the_document_has_examples() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize(("where", "schema", "value"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_examples_validate_against_their_schemas(
    where: str, schema: dict[str, Any], value: Any
) -> None:
    errors = list(validator(DOC, schema).iter_errors(value))
    assert not errors, [e.message for e in errors]


def test_schemas_reject_what_the_api_never_sends() -> None:
    decision = schema_validator("Decision")
    example = DOC["paths"]["/v1/decide"]["post"]["responses"]["200"]["content"]["application/json"][
        "examples"
    ]["allow"]["value"]
    assert decision.is_valid(example)
    assert not decision.is_valid({**example, "outcome": "maybe"})
    assert not decision.is_valid({**example, "extra": 1})
    assert not decision.is_valid({k: v for k, v in example.items() if k != "code"})
    call = schema_validator("ToolCall")
    assert call.is_valid({"tenant": "a", "agent_id": "b", "tool": "c"})
    assert not call.is_valid({"tenant": "a", "agent_id": "b"})
    assert not call.is_valid({"tenant": "a", "agent_id": "b", "tool": "c", "x": 1})


def test_limits_are_stated() -> None:
    doc = openapi_document(ApiLimits(max_batch=7), HttpLimits(max_body_bytes=1234))
    assert doc["components"]["schemas"]["BatchRequest"]["properties"]["calls"]["maxItems"] == 7
    assert "1234" in doc["paths"]["/v1/decide"]["post"]["responses"]["413"]["description"]


@pytest.mark.anyio
async def test_served_document_and_live_responses_match_the_schemas(
    serve_api, examples_policy: CompiledPolicy
) -> None:
    limits = ApiLimits(max_batch=5)
    http_limits = HttpLimits(max_body_bytes=4096)
    async with serve_api(
        Pipeline.with_defaults(examples_policy), limits=limits, http_limits=http_limits
    ) as api:
        resp = await api.client.get("/openapi.json")
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/json"
        served = resp.json()
        assert served == openapi_document(limits, http_limits)

        decision = validator(served, {"$ref": "#/components/schemas/Decision"})
        error = validator(served, {"$ref": "#/components/schemas/Error"})
        batch = validator(served, {"$ref": "#/components/schemas/BatchResponse"})
        status = validator(served, {"$ref": "#/components/schemas/Status"})
        pay = {"tenant": "acme", "agent_id": "finance-agent", "tool": "stripe.create_payment"}
        for params in ({"amount": 1, "currency": "USD"}, {"amount": 9000}, {"amount": "x"}):
            got = (await api.client.post("/v1/decide", json={**pay, "params": params})).json()
            decision.validate(got)
        for bad in (b"{", b"[]", b'{"tenant":"a"}'):
            got = await api.client.post(
                "/v1/decide", content=bad, headers={"content-type": "application/json"}
            )
            assert got.status_code == 400
            error.validate(got.json())
        error.validate((await api.client.post("/v1/decide", content=b"{}")).json())  # 415
        error.validate((await api.client.get("/nope")).json())
        got = await api.client.post("/v1/decide/batch", json={"calls": [pay, {}, 3]})
        batch.validate(got.json())
        status.validate((await api.client.get("/healthz")).json())
        status.validate((await api.client.get("/readyz")).json())
