"""The Envoy door's three modes, driven the way Envoy drives them.

One mapping serves every call: ``POST /read/{tool}`` and ``POST /write/{tool}``
name the tool from the path and fix the kind, the JSON body is the params
(query parameters are not merged), and tenant, agent, parent chain and session
come from the x-aegis-* headers. What that cannot state exactly is skipped:

* agent labels, cost estimates and ``phase: list`` have no place in the request;
* a call's own ``destination``: Envoy always derives one from the request's
  scheme, authority and path (``https://tools.agree.test/write/<tool>``);
* an unstated kind: every route fixes one. An unstated kind is decided as a
  write (``CompiledPolicy.kind_of``), so such calls go to ``/write/``, and are
  carried only when the engine decides the call with that kind and destination
  exactly as it decides the call without them (agree_core.door_call_plan).

No request reaches any host: ext_authz and ext_proc receive descriptions of
requests, and ``tools.agree.test`` (RFC 6761 reserves .test) is only a name in them.
"""

from __future__ import annotations

import json
import re
import string
from typing import Any

import grpc
import httpx
from agree_core import (
    Door,
    Plan,
    Probe,
    Recorded,
    RecordingEvidence,
    Reply,
    door_call_plan,
    error_body_diff,
    error_field,
    json_exact,
    json_same,
    with_fields,
)
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc

from aegis.core.call import McpPhase, ToolCall, ToolKind, TraceContext, parse_call
from aegis.core.decision import Decision, Outcome
from aegis.doors.envoy import DOOR_AUTHZ_GRPC, DOOR_AUTHZ_HTTP, DOOR_EXT_PROC, MappingConfig
from aegis.errors import CallError
from aegis.pipeline.wire import (
    APPROVAL_ID_HEADER,
    CODE_HEADER,
    DECISION_ID_HEADER,
    http_status,
)
from aegis.policy import CompiledPolicy

HOST = "tools.agree.test"
MAPPING = MappingConfig.from_dict(
    {
        "query_params": "ignore",
        "routes": [
            {
                "name": "reads",
                "methods": ["POST"],
                "path": "/read/{tool}",
                "tool": "{tool}",
                "kind": "read",
            },
            {
                "name": "writes",
                "methods": ["POST"],
                "path": "/write/{tool}",
                "tool": "{tool}",
                "kind": "write",
            },
        ],
    }
)
#: The mapping's identifier alphabet (aegis.doors.envoy.mapping._ident).
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-/]{0,127}")
#: Characters a path segment carries as they are: RFC 3986 pchar without "%", so
#: the route variable is the tool name itself.
_SEGMENT = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@")
_HEX = frozenset("0123456789abcdef")
# google.rpc codes of the CheckResponse (authz_grpc: the status of each answer).
_RPC = {200: 0, 400: 3, 403: 7, 413: 3, 428: 9, 429: 8}


def _trace_ok(trace: TraceContext) -> bool:
    """Whether Envoy's mapping keeps this trace context as it is (W3C Trace Context
    §3.2: a malformed traceparent is dropped, with its tracestate)."""
    parent, state = trace.traceparent, trace.tracestate
    if not parent:
        return not state
    fields = parent.split("-")
    return (
        len(parent) == 55
        and [len(f) for f in fields] == [2, 32, 16, 2]
        and set(parent.replace("-", "")) <= _HEX
        and fields[0] != "ff"
        and set(fields[1]) != {"0"}
        and set(fields[2]) != {"0"}
        and "," not in state
        and state.isascii()
        and state.isprintable()
    )


def _unsendable(call: ToolCall) -> str | None:
    """Why no request under the mapping states ``call``'s fields, or None."""
    if call.agent_labels:
        return "agent_labels: no header carries labels"
    if call.cost_estimate is not None:
        return "cost_estimate: no header carries it"
    if call.phase is McpPhase.LIST:
        return "phase list: an HTTP request is a call"
    if call.destination is not None:
        return "destination: Envoy derives it from the request's scheme, authority and path"
    idents = [call.tenant, call.agent_id, *call.parent_chain]
    if call.session_id:
        idents.append(call.session_id)
    if not all(_IDENT.fullmatch(i) for i in idents):
        return "an identity outside the mapping's identifier alphabet"
    if not set(call.tool) <= _SEGMENT or call.tool in {".", ".."}:
        return "a tool name a path segment cannot carry unescaped"
    if not _trace_ok(call.trace):
        return "a malformed traceparent, which Envoy's mapping drops"
    return None


def _request(call: ToolCall, params: Any) -> tuple[str, list[tuple[str, str]], bytes]:
    """(path, headers, body) of the request that states ``call`` with ``params``."""
    segment = "read" if call.kind is ToolKind.READ else "write"
    body = json.dumps(params, ensure_ascii=False, allow_nan=False).encode()
    headers = [
        ("x-aegis-tenant", call.tenant),
        ("x-aegis-agent-id", call.agent_id),
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
    ]
    if call.parent_chain:
        headers.append(("x-aegis-parent-chain", ",".join(call.parent_chain)))
    if call.session_id:
        headers.append(("x-aegis-session", call.session_id))
    if call.trace.traceparent:
        headers.append(("traceparent", call.trace.traceparent))
        if call.trace.tracestate:
            headers.append(("tracestate", call.trace.tracestate))
    return f"/{segment}/{call.tool}", headers, body


def envoy_plan(probe: Probe, policy: CompiledPolicy) -> Plan | str:
    raw = probe.raw
    if not isinstance(raw, dict):
        return "not a call object: a request always has headers and a path"
    if probe.error is not None:
        # A refusal can be sent only when it lies in the params (the body): every
        # other field is a header or the path, whose own checks answer first.
        params = raw.get("params")
        try:
            base = parse_call({k: v for k, v in raw.items() if k != "params"})
        except CallError:
            return "refused outside params: the headers' own checks answer first"
        if not isinstance(params, dict):
            return "params not an object: a non-object body is params.body"
        if not json_exact(params):
            return "not JSON (NaN, infinity, a date): no JSON body can state it"
        why = _unsendable(base)
        if why is not None:
            return why
        return Plan(error=str(probe.error.code), send=_request(base, params))
    call = probe.call
    assert call is not None
    why = _unsendable(call)
    if why is not None:
        return why
    door_call = with_fields(
        call,
        kind=call.kind or ToolKind.WRITE,
        destination=f"https://{HOST}/{'read' if call.kind is ToolKind.READ else 'write'}/{call.tool}",
    )
    send = _request(door_call, dict(call.params))
    return door_call_plan(probe, policy, door_call, send, "Envoy states a kind and destination")


# -- what the client would see ----------------------------------------------------------


class Answer:
    """Envoy's verdict in any mode: the status the client gets (200: forwarded
    upstream), the x-aegis-* headers, and the error body -- or, for ext_proc, the
    rewritten body sent upstream."""

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        rpc_code: int | None = None,
        rewritten: bool = False,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.rpc_code = rpc_code
        self.rewritten = rewritten


def _needs_rewrite(decision: Decision, call: ToolCall) -> bool:
    return (
        decision.outcome is Outcome.SANITIZE
        and decision.sanitized_params is not None
        and not json_same(dict(decision.sanitized_params), dict(call.params))
    )


class EnvoyDoor(Door):
    can_rewrite = False

    def plan(self, probe: Probe, policy: CompiledPolicy) -> Plan | str:
        return envoy_plan(probe, policy)

    def check_decided(self, reply: Reply, rec: Recorded, plan: Plan) -> list[str]:
        answer: Answer = reply.data
        decision = rec.decision
        rewrite = _needs_rewrite(decision, rec.call)
        refused_sanitize = rewrite and not self.can_rewrite
        # ext_authz cannot send a redacted body upstream: it refuses such a sanitize (403).
        permitted = 403 if refused_sanitize else 200
        want = permitted if decision.permits else http_status(decision)
        out = [] if answer.status == want else [f"status {answer.status}, want {want}"]
        if answer.rpc_code is not None and answer.rpc_code != _RPC.get(want):
            out.append(f"rpc code {answer.rpc_code} for HTTP {want}")
        want_headers = {
            DECISION_ID_HEADER: decision.decision_id,
            CODE_HEADER: str(decision.code),
            APPROVAL_ID_HEADER: decision.approval_id,
        }
        for name, value in want_headers.items():
            if answer.headers.get(name) != value:
                out.append(f"header {name}: want {value!r}, got {answer.headers.get(name)!r}")
        if want != 200:
            out += error_body_diff(
                decision, json.loads(answer.body), reason_prefix=refused_sanitize
            )
        elif rewrite:
            sent = json.loads(answer.body) if answer.rewritten else None
            if not json_same(sent, decision.sanitized_params):
                out.append(f"sent upstream {sent!r}, want {decision.sanitized_params!r}")
            if answer.headers.get("content-length") != str(len(answer.body)):
                out.append("the rewritten body's content-length is not set to its length")
        elif answer.rewritten:
            out.append("rewrote a request the decision leaves as it is")
        return out

    def check_refused(self, reply: Reply, plan: Plan) -> list[str]:
        answer: Answer = reply.data
        want = 413 if plan.error == "call.too_large" else 400
        out = [] if answer.status == want else [f"status {answer.status}, want {want}"]
        code = error_field(json.loads(answer.body), "code") if answer.body else None
        if code != plan.error or answer.headers.get(CODE_HEADER) != plan.error:
            out.append(f"refused with {code!r} / {answer.headers.get(CODE_HEADER)!r}")
        if answer.rpc_code is not None and answer.rpc_code != _RPC[want]:
            out.append(f"rpc code {answer.rpc_code} for a refusal")
        return out


def _options(options: Any) -> dict[str, str]:
    out = {}
    for option in options:
        raw = bytes(option.header.raw_value)
        out[option.header.key] = raw.decode("latin-1") if raw else option.header.value
    return out


class AuthzGrpcDoor(EnvoyDoor):
    """``Authorization/Check`` with a CheckRequest as Envoy builds it with
    ``pack_as_bytes`` and ``encode_raw_headers``."""

    name = label = DOOR_AUTHZ_GRPC

    def __init__(self, sink: RecordingEvidence, channel: grpc.aio.Channel) -> None:
        super().__init__(sink)
        self.stub = external_auth_pb2_grpc.AuthorizationStub(channel)

    async def send(self, probe: Probe, plan: Plan) -> Reply:
        path, headers, body = plan.send
        check = external_auth_pb2.CheckRequest()
        http = check.attributes.request.http
        http.method, http.path, http.host, http.scheme = "POST", path, HOST, "https"
        http.protocol = "HTTP/1.1"
        pairs = [(":method", "POST"), (":path", path), (":authority", HOST), *headers]
        for key, value in pairs:
            http.header_map.headers.add(key=key, raw_value=value.encode("utf-8"))
        http.raw_body, http.size = body, len(body)
        response = await self.stub.Check(check, timeout=10)
        if response.status.code == 0:
            ok = response.ok_response
            answer = Answer(200, _options(ok.headers), b"", 0)
            client = _options(ok.response_headers_to_add)
            if client.get(DECISION_ID_HEADER) != answer.headers.get(DECISION_ID_HEADER):
                answer.headers[DECISION_ID_HEADER] = "client and upstream ids differ"
        else:
            denied = response.denied_response
            answer = Answer(
                denied.status.code,
                _options(denied.headers),
                denied.body.encode(),
                response.status.code,
            )
        return Reply(answer.headers.get(DECISION_ID_HEADER), answer)


class AuthzHttpDoor(EnvoyDoor):
    """The ext_authz ``http_service`` call: the client's request mirrored under a prefix."""

    name = label = DOOR_AUTHZ_HTTP
    prefix = "/envoy/authz"

    def __init__(self, sink: RecordingEvidence, client: httpx.AsyncClient) -> None:
        super().__init__(sink)
        self.client = client

    async def send(self, probe: Probe, plan: Plan) -> Reply:
        path, headers, body = plan.send
        sent = [(k, v) for k, v in headers if k != "content-length"]
        sent += [("host", HOST), ("x-forwarded-proto", "https")]
        response = await self.client.post(self.prefix + path, headers=sent, content=body)
        answer = Answer(response.status_code, dict(response.headers), response.content)
        return Reply(answer.headers.get(DECISION_ID_HEADER), answer)


class ExtProcDoor(EnvoyDoor):
    """One ``ExternalProcessor/Process`` stream: request_headers, then the BUFFERED body."""

    name = label = DOOR_EXT_PROC
    can_rewrite = True

    def __init__(self, sink: RecordingEvidence, channel: grpc.aio.Channel) -> None:
        super().__init__(sink)
        self.stub = external_processor_pb2_grpc.ExternalProcessorStub(channel)

    async def send(self, probe: Probe, plan: Plan) -> Reply:
        path, headers, body = plan.send
        first = ep.ProcessingRequest()
        pseudo = [(":method", "POST"), (":path", path), (":authority", HOST), (":scheme", "https")]
        for key, value in [*pseudo, *headers]:
            first.request_headers.headers.headers.add(key=key, raw_value=value.encode("utf-8"))
        first.request_headers.end_of_stream = False
        second = ep.ProcessingRequest()
        second.request_body.body = body
        second.request_body.end_of_stream = True
        stream = self.stub.Process(timeout=10)
        responses = []
        for message in (first, second):
            await stream.write(message)
            response = await stream.read()
            assert response is not grpc.aio.EOF, "ext_proc closed the stream without answering"
            responses.append(response)
            if response.HasField("immediate_response"):
                break
        await stream.done_writing()
        assert await stream.code() == grpc.StatusCode.OK
        last = responses[-1]
        if last.HasField("immediate_response"):
            reply = last.immediate_response
            answer = Answer(reply.status.code, _options(reply.headers.set_headers), reply.body)
        else:
            common = getattr(last, last.WhichOneof("response")).response
            rewritten = common.body_mutation.WhichOneof("mutation") == "body"
            answer = Answer(
                200,
                _options(common.header_mutation.set_headers),
                common.body_mutation.body if rewritten else b"",
                rewritten=rewritten,
            )
        return Reply(answer.headers.get(DECISION_ID_HEADER), answer)
