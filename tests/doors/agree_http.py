"""The decision API and the Python SDK (in-process and over HTTP) as doors.

These carry every call: the API takes the ToolCall JSON as it is (so anything
JSON can spell, refusals included), and the SDK takes the call as Python data.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from agree_core import (
    Door,
    Plan,
    Probe,
    Recorded,
    RecordingEvidence,
    Reply,
    decision_diff,
    json_exact,
    json_same,
)

from aegis.core.decision import Decision
from aegis.pipeline.wire import APPROVAL_ID_HEADER, CODE_HEADER, DECISION_ID_HEADER
from aegis.policy import CompiledPolicy
from aegis.sdk import AegisClient, InvalidCall, LocalAegis


def _plain_plan(probe: Probe) -> Plan:
    if probe.error is not None:
        return Plan(error=str(probe.error.code), send=probe.error.path)
    return Plan(call=probe.call)


def _decision_headers(decision: Decision, headers: dict[str, str]) -> list[str]:
    out = []
    want = {
        DECISION_ID_HEADER: decision.decision_id,
        CODE_HEADER: str(decision.code),
        APPROVAL_ID_HEADER: decision.approval_id,
    }
    for name, value in want.items():
        if headers.get(name) != value:
            out.append(f"header {name}: want {value!r}, got {headers.get(name)!r}")
    return out


class ApiDoor(Door):
    """``POST /v1/decide`` with the call's JSON, exactly as the case states it."""

    name = "api"
    label = "api"

    def __init__(self, sink: RecordingEvidence, client: httpx.AsyncClient) -> None:
        super().__init__(sink)
        self.client = client

    def plan(self, probe: Probe, policy: CompiledPolicy) -> Plan | str:
        if not json_exact(probe.raw):
            return "not JSON (NaN, infinity, a date): no JSON body can state it"
        return _plain_plan(probe)

    async def send(self, probe: Probe, plan: Plan) -> Reply:
        body = json.dumps(probe.raw, ensure_ascii=False, allow_nan=False).encode()
        response = await self.client.post(
            "/v1/decide", content=body, headers={"content-type": "application/json"}
        )
        data = (response.status_code, dict(response.headers), json.loads(response.content))
        decision_id = response.headers.get(DECISION_ID_HEADER)
        return Reply(decision_id, data)

    def check_decided(self, reply: Reply, rec: Recorded, plan: Plan) -> list[str]:
        status, headers, body = reply.data
        out = [] if status == 200 else [f"status {status}, want 200"]
        # The body is the whole Decision (docs/doors/api.md): compare it as JSON.
        want = json.loads(json.dumps(rec.decision.to_dict()))
        if not json_same(body, want):
            out.append(f"body {body!r} is not the recorded decision {want!r}")
        return out + _decision_headers(rec.decision, headers)

    def check_refused(self, reply: Reply, plan: Plan) -> list[str]:
        status, headers, body = reply.data
        error = body.get("error") if isinstance(body, dict) else None
        want = {"type": "CallError", "code": plan.error, "path": plan.send}
        out = [] if status == 400 else [f"status {status}, want 400"]
        if not isinstance(error, dict) or any(error.get(k) != v for k, v in want.items()):
            out.append(f"error body {body!r}, want {want}")
        if DECISION_ID_HEADER in headers:
            out.append("a refusal carries a decision id")
        return out


class SdkLocalDoor(Door):
    """``LocalAegis.decide`` (the engine in-process, on its own loop thread)."""

    name = "sdk_local"
    label = "sdk"

    def __init__(self, sink: RecordingEvidence, aegis: LocalAegis) -> None:
        super().__init__(sink)
        self.aegis = aegis

    def plan(self, probe: Probe, policy: CompiledPolicy) -> Plan | str:
        return _plain_plan(probe)

    async def send(self, probe: Probe, plan: Plan) -> Reply:
        try:
            # Blocks this loop for one decision; the pipeline runs on LocalAegis's thread.
            decision = self.aegis.decide(probe.raw)
        except InvalidCall as exc:
            return Reply(None, exc)
        return Reply(decision.decision_id, decision)

    def check_decided(self, reply: Reply, rec: Recorded, plan: Plan) -> list[str]:
        got = reply.data
        if not isinstance(got, Decision):
            return [f"raised {got!r}"]
        # In-process, the caller gets the very Decision the pipeline recorded.
        return [] if got == rec.decision else [f"returned {got!r}, recorded {rec.decision!r}"]

    def check_refused(self, reply: Reply, plan: Plan) -> list[str]:
        return _check_invalid_call(reply, plan)


class SdkHttpDoor(Door):
    """``AegisClient.decide`` against a decision API server of its own."""

    name = "sdk_http"
    label = "api"  # the decision API server behind the client decides

    def __init__(self, sink: RecordingEvidence, client: AegisClient) -> None:
        super().__init__(sink)
        self.client = client

    def plan(self, probe: Probe, policy: CompiledPolicy) -> Plan | str:
        return _plain_plan(probe)

    async def send(self, probe: Probe, plan: Plan) -> Reply:
        try:
            # The sync client in a worker thread: the server runs on this loop.
            decision = await asyncio.to_thread(self.client.decide, probe.raw)
        except InvalidCall as exc:
            return Reply(None, exc)
        return Reply(decision.decision_id, decision)

    def check_decided(self, reply: Reply, rec: Recorded, plan: Plan) -> list[str]:
        got: Any = reply.data
        if not isinstance(got, Decision):
            return [f"raised {got!r}"]
        out = [f"as read by the client: {p}" for p in decision_diff(rec.decision, got)]
        if got.approval_id != rec.decision.approval_id:
            out.append(f"approval_id {got.approval_id!r}, recorded {rec.decision.approval_id!r}")
        if set(got.redactions) != set(rec.decision.redactions) or list(got.redactions) != list(
            rec.decision.redactions
        ):
            out.append("redactions read back in another order")
        return out

    def check_refused(self, reply: Reply, plan: Plan) -> list[str]:
        return _check_invalid_call(reply, plan)


def _check_invalid_call(reply: Reply, plan: Plan) -> list[str]:
    exc = reply.data
    if not isinstance(exc, InvalidCall):
        return [f"not refused: {exc!r}"]
    out = []
    if str(exc.code) != plan.error:
        out.append(f"refused with {exc.code}, want {plan.error}")
    if exc.path != plan.send:
        out.append(f"refused at {exc.path!r}, want {plan.send!r}")
    return out
