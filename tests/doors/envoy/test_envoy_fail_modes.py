"""DESIGN.md §6's fail-mode matrix, per Envoy mode, as Envoy would see it:
{core ok, raising, slow, store down} x {declared read that may fail open, write}.

"Could not decide" reaches the door already turned into an answer by the
policy's fail mode; the door must render it (fail open: through, fail closed:
403), and the evidence stage must count and log it, labelled with the door.
"""

from __future__ import annotations

import pytest
from envoy_rig import MODES, Req, json_req, make_rig, run, serve
from google.rpc import code_pb2

from aegis.doors.envoy import DOOR_AUTHZ_GRPC, DOOR_AUTHZ_HTTP, DOOR_EXT_PROC, MappingConfig
from aegis.policy import compile_text
from aegis.testing.pipelines import FAILURES

POLICY = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: failmodes, tenant: acme, version: v1}
defaults: {fail_mode: {read: open}}
tools:
  - {name: db.query, kind: read}
  - {name: db.write, kind: write}
rules:
  - {id: reads, match: {tools: [db.query]}, effect: allow}
  - {id: writes, match: {tools: [db.write]}, effect: allow}
"""
MAPPING = MappingConfig.from_dict(
    {
        "routes": [
            {"methods": ["GET"], "path": "/query", "tool": "db.query"},
            {"methods": ["POST"], "path": "/write", "tool": "db.write"},
        ]
    }
)
AGENT = {"x-aegis-tenant": "acme", "x-aegis-agent-id": "reporter"}
DOORS = {"grpc": DOOR_AUTHZ_GRPC, "http": DOOR_AUTHZ_HTTP, "ext_proc": DOOR_EXT_PROC}
REQUESTS = {
    "read": Req("GET", "/query?table=orders", "db.internal", AGENT),
    "write": json_req("POST", "/write", "db.internal", AGENT, {"table": "orders", "n": 1}),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("failure", [None, *FAILURES])
@pytest.mark.parametrize("kind", ["read", "write"])
def test_fail_mode_matrix(mode: str, failure: str | None, kind: str) -> None:
    rig = make_rig(compile_text(POLICY), failure, mapping=MAPPING)

    async def main() -> None:
        async with serve(mode, rig) as decide:
            verdict = await decide(REQUESTS[kind])
        door = DOORS[mode]
        errors = rig.metric("aegis_pipeline_errors_total", door=door, error=_error(failure))
        fail_open = rig.metric("aegis_fail_open_total", door=door, error=_error(failure))
        if failure is None:
            assert verdict.status == 200
            assert verdict.headers["x-aegis-code"] == "decision.allowed"
            assert not rig.events("decision.could_not_decide")
            assert (errors, fail_open) == (0, 0)
            return
        (line,) = rig.events("decision.could_not_decide")
        assert (line["door"], line["error"]) == (door, _error(failure))
        assert line["tool"] == f"db.{'query' if kind == 'read' else 'write'}"
        assert errors == 1
        if kind == "read":  # declared read + defaults.fail_mode.read: open
            assert verdict.status == 200
            assert verdict.headers["x-aegis-code"] == "decision.fail_open"
            assert line["fail_mode"] == "open"
            assert fail_open == 1
            assert verdict.rpc_code in {None, code_pb2.OK}
        else:  # a write always fails closed
            assert verdict.status == 403
            assert verdict.headers["x-aegis-code"] == "decision.fail_closed"
            assert verdict.json["error"]["code"] == "decision.fail_closed"
            assert line["decision_id"] == verdict.json["error"]["decision_id"]
            assert line["fail_mode"] == "closed"
            assert fail_open == 0
            assert verdict.rpc_code in {None, code_pb2.PERMISSION_DENIED}

    run(main())


def _error(failure: str | None) -> str:
    return str(FAILURES[failure][1]) if failure else "none"


def test_a_read_the_policy_does_not_declare_fails_closed() -> None:
    """The request's method says "read", but only a declared read may fail open."""
    rig = make_rig(compile_text(POLICY), "raising", mapping=MappingConfig())

    async def main() -> None:
        async with serve("grpc", rig) as decide:
            verdict = await decide(Req("GET", "/anything", "db.internal", AGENT))
        assert verdict.status == 403
        assert verdict.json["error"]["code"] == "decision.fail_closed"

    run(main())
