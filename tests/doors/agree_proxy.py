"""The egress forward proxy as a door, with probes of its own.

The proxy builds the whole call from an HTTP request: the tool and kind from
the method (``http.get`` read / ``http.request`` write), the destination from
the target, params ``{method, path, query, headers[, body]}`` -- or, for a
CONNECT, ``{"method": "CONNECT"}`` with destination ``https://host:443`` (or
``tcp://host:port``). Conformance calls rarely have that shape, so this door
gets a dedicated set derived from ``examples/egress/policy.test.yaml``: each
request below states one of that suite's calls the way the proxy can, and its
probe is the exact ToolCall the proxy must build for it (decided by the engine
like any other probe, and sent through the API and SDK too). That suite's
"no destination" test has no such request: the proxy always has a destination.

That suite only allows and denies, so a second, small set (:data:`OBLIGATIONS`,
a policy of its own) asks for the other two outcomes over plain HTTP: an
approval (428 with the ticket) and a sanitize (the upstream must receive the
redacted body), beside an allowed request that is forwarded as it is.

Nothing is dialled but 127.0.0.1: the proxy's ``connect`` is replaced by one
that opens a connection to a local sink whatever name the policy allowed, and
only denied requests name hosts outside the allowlist (they are never dialled).
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import yaml
from agree_core import (
    REPO,
    Door,
    Group,
    Plan,
    Probe,
    Recorded,
    RecordingEvidence,
    Reply,
    error_body_diff,
    make_probe,
)

from aegis.core.decision import Decision
from aegis.pipeline.wire import APPROVAL_ID_HEADER, CODE_HEADER, DECISION_ID_HEADER, http_status
from aegis.policy import CompiledPolicy, compile_text, load_policy

EGRESS = REPO / "examples" / "egress"
LOCAL = "127.0.0.1"


@dataclass(frozen=True)
class ProxyRequest:
    """One request to the proxy, and the egress suite test it restates."""

    test: str
    agent: str
    method: str
    target: str
    body: bytes = b""
    content_type: str | None = None
    #: The outcome its probe must get when it is not the egress suite's: a
    #: restatement in plain http is denied by egress-https-only, and each
    #: request of the obligations set names the outcome it asks for.
    outcome: str | None = None

    @property
    def is_connect(self) -> bool:
        return self.method == "CONNECT"


@dataclass(frozen=True)
class _Spec:
    request: ProxyRequest
    tool: str
    kind: str
    destination: str
    params: dict[str, Any] = field(default_factory=dict)


def _connect(test: str, agent: str, host: str, port: int, outcome: str | None = None) -> _Spec:
    scheme = f"https://{host}:443" if port == 443 else f"tcp://{host}:{port}"
    return _Spec(
        ProxyRequest(test, agent, "CONNECT", f"{host}:{port}", outcome=outcome),
        "http.request",
        "write",
        scheme,
        {"method": "CONNECT"},
    )


def _http(
    test: str,
    agent: str,
    method: str,
    url: str,
    destination: str,
    path: str,
    text: str | None = None,
    outcome: str | None = "deny",
) -> _Spec:
    """A plain-HTTP request; in the egress set, plain http is always denied."""
    params: dict[str, Any] = {"method": method, "path": path, "query": "", "headers": {}}
    request = ProxyRequest(test, agent, method, url, outcome=outcome)
    if text is not None:
        params["headers"] = {"content-type": "text/plain"}
        params["body"] = text
        request = ProxyRequest(test, agent, method, url, text.encode(), "text/plain", outcome)
    read = method == "GET" and text is None
    return _Spec(
        request,
        "http.get" if read else "http.request",
        "read" if read else "write",
        destination,
        params,
    )


_SPECS = [
    _connect("the Stripe API is allowed", "finance-agent", "api.stripe.com", 443),
    _connect(
        "any Salesforce instance subdomain is allowed", "crm-agent", "acme.my.salesforce.com", 443
    ),
    _http(
        "exfiltration to an unknown domain is blocked",
        "crm-agent",
        "POST",
        "http://example-exfil.xyz/upload",
        "http://example-exfil.xyz/upload",
        "/upload",
        text="ssn=078-05-1120",
    ),
    _connect("exfiltration to an unknown domain is blocked", "crm-agent", "example-exfil.xyz", 443),
    _http(
        "userinfo cannot smuggle an allowlisted name",
        "crm-agent",
        "GET",
        "http://api.stripe.com@example-exfil.xyz/",
        "http://example-exfil.xyz/",
        "/",
    ),
    _connect("a lookalike suffix is not a subdomain", "crm-agent", "evilsalesforce.com", 443),
    # api.githuЬ.com (Cyrillic Ь), as a CONNECT target states it: in punycode.
    _connect(
        "a Cyrillic homograph of github is not github", "crm-agent", "api.xn--githu-10e.com", 443
    ),
    _connect("a trailing dot is the same host", "crm-agent", "api.github.com.", 443),
    _http(
        "a trailing dot is the same host",
        "crm-agent",
        "GET",
        "http://api.github.com./repos",
        "http://api.github.com./repos",
        "/repos",
    ),
    _connect("the Slack webhook only on 443", "crm-agent", "hooks.slack.com", 8443),
    # ... and the converse: on 443 it is allowed.
    _connect("the Slack webhook only on 443", "crm-agent", "hooks.slack.com", 443, "allow"),
    _http(
        "plain http to an allowlisted host is denied",
        "crm-agent",
        "GET",
        "http://api.github.com/",
        "http://api.github.com/",
        "/",
    ),
]


#: Plain-HTTP obligations the egress suite does not exercise (lab.agree.test is
#: only ever "dialled" as 127.0.0.1).
OBLIGATIONS = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: agree-proxy-obligations, tenant: acme}
tools:
  - {name: http.request, kind: write}
  - {name: http.get, kind: read}
rules:
  - id: lab-reads
    match: {tools: [http.get]}
    when: [{destination: {host_in: [lab.agree.test]}}]
    effect: allow
  - id: payouts-need-approval
    match: {tools: [http.request]}
    when: [{destination: {host_in: [lab.agree.test]}}, {param: path, matches: "^/payouts"}]
    effect: approval_needed
    approval: {group: payments, ttl: 10m}
  - id: uploads-are-scrubbed
    match: {tools: [http.request]}
    when: [{destination: {host_in: [lab.agree.test]}}, {param: path, matches: "^/upload"}]
    effect: sanitize
    sanitize: {detectors: [email], scan: [body]}
"""
_OBLIGATION_SPECS = [
    _http(
        "lab read",
        "lab-agent",
        "GET",
        "http://lab.agree.test/status",
        "http://lab.agree.test/status",
        "/status",
        outcome="allow",
    ),
    _http(
        "lab payout",
        "lab-agent",
        "POST",
        "http://lab.agree.test/payouts",
        "http://lab.agree.test/payouts",
        "/payouts",
        text="amount=9000",
        outcome="approval_needed",
    ),
    _http(
        "lab upload",
        "lab-agent",
        "POST",
        "http://lab.agree.test/upload",
        "http://lab.agree.test/upload",
        "/upload",
        text="notes for jane.doe@example.com",
        outcome="sanitize",
    ),
]


def _probe(spec: _Spec, policy: CompiledPolicy, now: datetime, source: str) -> Probe:
    raw = {
        "tenant": "acme",
        "agent_id": spec.request.agent,
        "tool": spec.tool,
        "kind": spec.kind,
        "destination": spec.destination,
        "params": spec.params,
    }
    return make_probe(
        f"{source}/{spec.request.method} {spec.request.target}", raw, policy, now, spec.request
    )


def obligations_group(now: datetime) -> Group:
    policy = compile_text(OBLIGATIONS)
    group = Group("proxy obligations", policy)
    group.probes = [_probe(spec, policy, now, "proxy-obligations") for spec in _OBLIGATION_SPECS]
    return group


def egress_group() -> tuple[Group, dict[str, str]]:
    """The egress probes, and the outcome the suite expects for each test name."""
    suite = yaml.safe_load((EGRESS / "policy.test.yaml").read_text(encoding="utf-8"))
    now = datetime.fromisoformat(suite["now"].replace("Z", "+00:00"))
    expected = {t["name"]: t["expect"]["outcome"] for t in suite["tests"]}
    policy = load_policy([EGRESS / "policy.yaml"])
    group = Group("egress (forward proxy)", policy)
    group.probes = [_probe(spec, policy, now, "egress") for spec in _SPECS]
    return group, expected


class LocalSink:
    """Where every allowed tunnel or request is dialled: 127.0.0.1, whatever the name.
    A plain-HTTP request is recorded (head and body) and answered 200; a tunnel's
    bytes are read until the client goes away."""

    def __init__(self) -> None:
        self.dialled: list[tuple[str, int]] = []
        self.received: list[tuple[bytes, bytes]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, LOCAL, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def connect(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.dialled.append((host, port))
        return await asyncio.open_connection(LOCAL, self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                self.received.append((head, await reader.readexactly(length)))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass  # a tunnel: the client closed after "200 Connection established"
        finally:
            writer.close()


@dataclass
class ProxyAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    dialled: list[tuple[str, int]]
    received: list[tuple[bytes, bytes]] = field(default_factory=list)


class ProxyDoor(Door):
    name = "forward_proxy"
    label = "proxy"  # ProxyConfig.door

    def __init__(self, sink: RecordingEvidence, port: int, upstream: LocalSink) -> None:
        super().__init__(sink)
        self.port = port
        self.upstream = upstream

    def plan(self, probe: Probe, policy: CompiledPolicy) -> Plan | str:
        if probe.proxy_request is None:
            return (
                "not proxy-shaped: the proxy builds tool, kind, destination and params "
                "from the request (its own egress and obligations sets cover it)"
            )
        return Plan(call=probe.call, send=probe.proxy_request)

    async def send(self, probe: Probe, plan: Plan) -> Reply:
        request: ProxyRequest = plan.send
        user = f"acme/{request.agent}:tok".encode()
        lines = [
            f"{request.method} {request.target} HTTP/1.1",
            f"host: {request.target.split('//')[-1].split('/')[0].split('@')[-1]}",
            f"proxy-authorization: Basic {base64.b64encode(user).decode()}",
        ]
        if request.content_type is not None:
            lines.append(f"content-type: {request.content_type}")
        if request.body:
            lines.append(f"content-length: {len(request.body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        before = len(self.upstream.dialled), len(self.upstream.received)
        reader, writer = await asyncio.open_connection(LOCAL, self.port)
        try:
            async with asyncio.timeout(10):
                writer.write(head + request.body)
                await writer.drain()
                answer = await _read_answer(reader, request.is_connect)
        finally:
            writer.close()
        answer.dialled = self.upstream.dialled[before[0] :]
        answer.received = self.upstream.received[before[1] :]
        return Reply(answer.headers.get(DECISION_ID_HEADER), answer)

    def check_decided(self, reply: Reply, rec: Recorded, plan: Plan) -> list[str]:
        answer: ProxyAnswer = reply.data
        decision: Decision = rec.decision
        request: ProxyRequest = plan.send
        want = 200 if decision.permits else http_status(decision)
        out = [] if answer.status == want else [f"status {answer.status}, want {want}"]
        for name, value in {
            DECISION_ID_HEADER: decision.decision_id,
            CODE_HEADER: str(decision.code),
            APPROVAL_ID_HEADER: decision.approval_id,
        }.items():
            if answer.headers.get(name) != value:
                out.append(f"header {name}: want {value!r}, got {answer.headers.get(name)!r}")
        if decision.permits:
            # The host the policy decided on is the one dialled (docs/doors/proxy.md).
            if request.is_connect:
                host, _, port = request.target.rpartition(":")
                dial = (host, int(port))
            else:
                url = urlsplit(request.target)
                dial = (url.hostname or "", url.port or 80)
            if answer.dialled != [dial]:
                out.append(f"dialled {answer.dialled}, want {[dial]}")
        if decision.permits and not request.is_connect:
            # What the upstream received: the body as sent, or as sanitized.
            want_body = request.body
            if decision.sanitized_params is not None:
                want_body = str(decision.sanitized_params.get("body", "")).encode()
            bodies = [body for _, body in answer.received]
            if bodies != [want_body]:
                out.append(f"the upstream received {bodies}, want {[want_body]}")
        if not decision.permits:
            out += error_body_diff(decision, json.loads(answer.body))
            if answer.dialled:
                out.append(f"dialled {answer.dialled} for a call it did not permit")
        return out

    def check_refused(self, reply: Reply, plan: Plan) -> list[str]:
        raise AssertionError("proxy probes are never malformed calls")


async def _read_answer(reader: asyncio.StreamReader, connect: bool) -> ProxyAnswer:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ")[1])
    headers = {}
    for line in fields:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if not (connect and status == 200):
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length)
    return ProxyAnswer(status, headers, body, [])
