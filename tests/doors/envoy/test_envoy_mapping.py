"""The Envoy mapping: HTTP request -> ToolCall, or a refusal with a stable code."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis.core.call import ToolKind
from aegis.doors.envoy import (
    EnvoyRequest,
    MappedCall,
    MappingConfig,
    MappingConfigError,
    MappingRefusal,
    QueryParams,
    RequestMapper,
    RouteRule,
)
from aegis.errors import ErrorCode

IDENT = (("x-aegis-tenant", "acme"), ("x-aegis-agent-id", "agent-1"))
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def req(
    method: str = "GET",
    target: str = "/",
    authority: str = "api.example.com",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes | None = None,
    **kwargs: Any,
) -> EnvoyRequest:
    return EnvoyRequest(method, target, authority, "https", (*IDENT, *headers), body, **kwargs)


def json_body(value: Any) -> dict[str, Any]:
    data = json.dumps(value).encode()
    return {
        "headers": (("content-type", "application/json"), ("content-length", str(len(data)))),
        "body": data,
    }


def mapped(config: MappingConfig | None, request: EnvoyRequest) -> MappedCall:
    result = RequestMapper(config or MappingConfig()).map(request)
    assert isinstance(result, MappedCall), result
    return result


def refused(config: MappingConfig | None, request: EnvoyRequest) -> MappingRefusal:
    result = RequestMapper(config or MappingConfig()).map(request)
    assert isinstance(result, MappingRefusal), result
    return result


# -- the default mapping -----------------------------------------------------------


def test_default_tool_name_method_host_path() -> None:
    call = mapped(None, req("POST", "/v1/charges?x=1", "API.Stripe.com:443", **json_body({}))).call
    assert call.tool == "http:POST api.stripe.com/v1/charges"
    assert call.destination == "https://api.stripe.com:443/v1/charges"
    assert call.params == {"x": "1"}
    assert call.kind is ToolKind.WRITE


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("GET", "read"),
        ("HEAD", "read"),
        ("OPTIONS", "read"),
        ("POST", "write"),
        ("PUT", "write"),
        ("PATCH", "write"),
        ("DELETE", "write"),
        ("TRACE", "write"),
        ("get", "write"),
    ],
)
def test_kind_follows_the_method(method: str, kind: str) -> None:
    # Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET, and not a read.
    assert mapped(None, req(method)).call.kind == ToolKind(kind)


def test_identity_chain_session_credentials_and_trace() -> None:
    request = req(
        headers=(
            ("x-aegis-parent-chain", "root-agent, planner"),
            ("x-aegis-session", "sess-42"),
            ("authorization", "Bearer eyJhbGciOi.payload.sig"),
            ("traceparent", TRACEPARENT),
            ("tracestate", "vendor=1"),
            ("x-request-id", "rid-7"),
        ),
        source_address="10.0.0.9",
    )
    result = mapped(None, request)
    call = result.call
    assert (call.tenant, call.agent_id) == ("acme", "agent-1")
    assert call.parent_chain == ("root-agent", "planner")
    assert call.parent_agent_id == "planner"
    assert call.session_id == "sess-42"
    assert (call.trace.traceparent, call.trace.tracestate) == (TRACEPARENT, "vendor=1")
    assert result.credentials == "eyJhbGciOi.payload.sig"
    assert (result.remote_addr, result.request_id) == ("10.0.0.9", "rid-7")


@pytest.mark.parametrize("auth", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "token abc"])
def test_only_a_bearer_token_becomes_credentials(auth: str) -> None:
    assert mapped(None, req(headers=(("authorization", auth),))).credentials is None


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        TRACEPARENT.replace("00-", "ff-", 1),
        TRACEPARENT.upper(),
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        TRACEPARENT + "-extra",
    ],
)
def test_malformed_traceparent_is_dropped_not_refused(traceparent: str) -> None:
    headers = (("traceparent", traceparent), ("tracestate", "a=b"))
    trace = mapped(None, req(headers=headers)).call.trace
    assert (trace.traceparent, trace.tracestate) == ("", "")


def test_custom_identity_headers() -> None:
    config = MappingConfig(tenant_header="x-tenant", agent_header="x-agent")
    request = EnvoyRequest("GET", "/", "h", headers=(("x-tenant", "t1"), ("x-agent", "a1")))
    call = mapped(config, request).call
    assert (call.tenant, call.agent_id) == ("t1", "a1")


# -- identity refusals ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        (),
        (("x-aegis-tenant", "acme"),),
        (("x-aegis-agent-id", "a"),),
        (("x-aegis-tenant", ""), ("x-aegis-agent-id", "a")),
    ],
)
def test_missing_identity_is_identity_missing(headers: tuple[tuple[str, str], ...]) -> None:
    request = EnvoyRequest("GET", "/", "h", headers=headers)
    assert refused(None, request).code is ErrorCode.IDENTITY_MISSING


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-aegis-tenant", "acme\r\nx-aegis-tenant: globex"),  # header splitting
        ("x-aegis-tenant", "acme\x00"),
        ("x-aegis-tenant", "acme,globex"),  # Envoy's merge of two tenant headers
        ("x-aegis-agent-id", "agent one"),
        ("x-aegis-agent-id", "-leading-dash"),
        ("x-aegis-agent-id", "a" * 129),
        ("x-aegis-agent-id", "agënt"),
        ("x-aegis-parent-chain", "root,,child"),
        ("x-aegis-parent-chain", "root;child"),
        ("x-aegis-session", "s p a c e"),
    ],
)
def test_injected_or_malformed_identity_is_refused(name: str, value: str) -> None:
    base = {"x-aegis-tenant": "acme", "x-aegis-agent-id": "agent-1", name: value}
    request = EnvoyRequest("GET", "/", "h", headers=tuple(base.items()))
    assert refused(None, request).code is ErrorCode.REQUEST_INVALID_HEADER


def test_a_repeated_identity_header_is_refused() -> None:
    request = req(headers=(("x-aegis-tenant", "globex"),))  # IDENT has acme already
    refusal = refused(None, request)
    assert refusal.code is ErrorCode.REQUEST_INVALID_HEADER
    assert "more than once" in refusal.reason


def test_a_too_long_parent_chain_is_refused() -> None:
    chain = ",".join(f"a{i}" for i in range(40))
    assert refused(None, req(headers=(("x-aegis-parent-chain", chain),))).code is (
        ErrorCode.CALL_TOO_DEEP
    )


# -- routes -------------------------------------------------------------------------


ROUTES = MappingConfig.from_dict(
    {
        "routes": [
            {
                "name": "issues",
                "hosts": ["api.github.com"],
                "path": "/repos/{owner}/{repo}/issues",
                "tool": "github.issues.{method}",
                "path_params": True,
            },
            {
                "name": "files",
                "hosts": ["*.files.example"],
                "path": "/v1/{bucket}/{key=**}",
                "tool": "files.{bucket}",
                "kind": "read",
            },
            {
                "name": "customers",
                "methods": ["GET"],
                "path_regex": "/v1/customers/(?P<customer>cus_[A-Za-z0-9]+)",
                "tool": "stripe.customer.get",
            },
            {"name": "admin", "path_prefix": "/admin/", "tool": "admin.{authority}"},
        ]
    }
)


def test_uri_template_route_with_path_params() -> None:
    result = mapped(ROUTES, req("POST", "/repos/acme/web/issues", "api.github.com"))
    assert result.call.tool == "github.issues.POST"
    assert result.call.params == {"owner": "acme", "repo": "web"}
    assert result.path_keys == {"owner", "repo"}


def test_double_star_captures_the_rest_and_route_kind_wins() -> None:
    call = mapped(ROUTES, req("DELETE", "/v1/logs/2026/11/a.txt", "eu.files.example")).call
    assert call.tool == "files.logs"
    assert call.kind is ToolKind.READ  # the route said so, whatever the method
    assert call.params == {}  # no path_params on this route


def test_regex_route_and_method_filter() -> None:
    assert mapped(ROUTES, req("GET", "/v1/customers/cus_9")).call.tool == "stripe.customer.get"
    # POST does not match the GET-only route and falls through to the default.
    call = mapped(ROUTES, req("POST", "/v1/customers/cus_9", **json_body({}))).call
    assert call.tool == "http:POST api.example.com/v1/customers/cus_9"


def test_prefix_route_and_authority_placeholder() -> None:
    call = mapped(ROUTES, req("GET", "/admin/users", "intra.example:8443")).call
    assert call.tool == "admin.intra.example:8443"
    assert mapped(ROUTES, req("GET", "/admin/x", "intra.example:443")).call.tool == (
        "admin.intra.example"
    )


def test_first_matching_route_wins() -> None:
    config = MappingConfig(
        routes=(RouteRule(path_prefix="/a", tool="first"), RouteRule(path_prefix="/a/b", tool="x"))
    )
    assert mapped(config, req("GET", "/a/b")).call.tool == "first"


@pytest.mark.parametrize(
    "target",
    [
        "/repos/acme/web/%69ssues",
        "/repos/acme/web/x/../issues",
        "/repos//acme/web/issues",
        "/repos/acme/./web/issues",
    ],
)
def test_path_spellings_normalise_before_matching(target: str) -> None:
    # The same resource by another spelling must not dodge the route.
    assert mapped(ROUTES, req("POST", target, "api.github.com")).call.tool == "github.issues.POST"


@pytest.mark.parametrize(
    "target",
    [
        "/repos/acme%2Fweb/issues",
        "/a%5cb",
        "/a\\b",
        "relative",
        "/a b",
        "/%zz",
        "/a%00b",
        "/caf\u00e9",
        "*",
    ],
)
def test_ambiguous_paths_are_refused(target: str) -> None:
    assert refused(ROUTES, req("GET", target)).code is ErrorCode.REQUEST_MALFORMED


def test_reserved_escapes_are_kept_upper_cased() -> None:
    call = mapped(None, req("GET", "/a%3ab/%7e/c%20d")).call
    assert call.tool == "http:GET api.example.com/a%3Ab/~/c%20d"


@pytest.mark.parametrize(
    "authority",
    [
        "api.stripe.com@evil.example",
        "evil.example/x",
        "host name",
        "h:99999",
        "h:abc",
        "[::1",
        "[zz]:1",
        "h\\x",
    ],
)
def test_authority_tricks_are_refused(authority: str) -> None:
    assert refused(None, req(authority=authority)).code is ErrorCode.REQUEST_INVALID_HEADER


def test_empty_authority_and_bad_method() -> None:
    assert refused(None, req(authority="")).code is ErrorCode.REQUEST_MALFORMED
    assert refused(None, req("GE T")).code is ErrorCode.REQUEST_MALFORMED


def test_ipv6_and_trailing_dot_hosts() -> None:
    assert mapped(None, req(authority="[::1]:8080")).call.tool == "http:GET [::1]/"
    assert mapped(None, req(authority="API.example.com.")).call.destination == (
        "https://api.example.com/"
    )


# -- params -------------------------------------------------------------------------------


def test_json_body_query_and_repeated_query() -> None:
    request = req("POST", "/x?limit=5&tag=a&tag=b&q=caf%C3%A9+x", **json_body({"amount": 10}))
    assert mapped(None, request).call.params == {
        "amount": 10,
        "limit": "5",
        "tag": ["a", "b"],
        "q": "café x",
    }


def test_non_object_json_body_is_params_body() -> None:
    assert mapped(None, req("POST", "/x", **json_body([1, 2]))).call.params == {"body": [1, 2]}


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/merge-patch+json", "Application/JSON"],
)
def test_json_media_types(content_type: str) -> None:
    request = req("PATCH", "/x", headers=(("content-type", content_type),), body=b'{"a":1}')
    assert mapped(None, request).call.params == {"a": 1}


def test_body_and_query_naming_the_same_param_is_refused() -> None:
    request = req("POST", "/pay?amount=1", **json_body({"amount": 10000}))
    refusal = refused(None, request)
    assert refusal.code is ErrorCode.REQUEST_MALFORMED
    assert "amount" in refusal.reason


def test_query_params_can_be_ignored() -> None:
    config = MappingConfig(query_params=QueryParams.IGNORE)
    assert mapped(config, req("GET", "/x?a=1")).call.params == {}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", ErrorCode.REQUEST_INVALID_JSON),
        (b'{"a": 1, "a": 2}', ErrorCode.REQUEST_INVALID_JSON),  # duplicate member
        (b'{"a": NaN}', ErrorCode.REQUEST_INVALID_JSON),
        (b'{"a": Infinity}', ErrorCode.REQUEST_INVALID_JSON),
        (b'{"a": "\xff\xfe"}', ErrorCode.REQUEST_INVALID_JSON),  # invalid UTF-8
        (b"\xef\xbb\xbf{}", ErrorCode.REQUEST_INVALID_JSON),  # a BOM
        (b"[" * 100_000, ErrorCode.REQUEST_INVALID_JSON),  # deep enough to recurse
        (b'{"a": ' + b"9" * 5000 + b"}", ErrorCode.REQUEST_INVALID_JSON),  # > int digit limit
        (b'{"a": 99999999999999999999}', ErrorCode.CALL_INVALID_NUMBER),  # > 2**63
        (b'{"a": "\\ud800"}', ErrorCode.CALL_INVALID_VALUE),  # lone surrogate
        (b"[" * 40 + b"]" * 40, ErrorCode.CALL_TOO_DEEP),
    ],
)
def test_bad_json_bodies_are_refused_with_stable_codes(body: bytes, code: ErrorCode) -> None:
    headers = (("content-type", "application/json"),)
    assert refused(None, req("POST", "/x", headers=headers, body=body)).code is code


def test_non_json_body_refused_by_default_and_ignored_when_configured() -> None:
    headers = (("content-type", "text/plain"),)
    request = req("POST", "/upload", headers=headers, body=b"hello")
    assert refused(None, request).code is ErrorCode.REQUEST_UNSUPPORTED_MEDIA_TYPE
    no_type = req("POST", "/upload", body=b'{"amount": 1}')  # JSON without saying so
    assert refused(None, no_type).code is ErrorCode.REQUEST_UNSUPPORTED_MEDIA_TYPE
    config = MappingConfig.from_dict(
        {"routes": [{"path_prefix": "/upload", "non_json_body": "ignore", "tool": "upload"}]}
    )
    assert mapped(config, request).call.params == {}
    assert mapped(MappingConfig.from_dict({"non_json_body": "ignore"}), request).call.tool


def test_json_in_another_charset_is_refused() -> None:
    headers = (("content-type", "application/json; charset=utf-16"),)
    request = req("POST", "/x", headers=headers, body='{"a":1}'.encode("utf-16"))
    assert refused(None, request).code is ErrorCode.REQUEST_UNSUPPORTED_MEDIA_TYPE


def test_oversize_partial_and_missing_bodies() -> None:
    small = MappingConfig(max_body_bytes=10)
    big = req("POST", "/x", **json_body({"text": "x" * 20}))
    assert refused(small, big).code is ErrorCode.REQUEST_TOO_LARGE
    partial = req("POST", "/x", **json_body({"a": 1}), body_truncated=True)
    assert refused(None, partial).code is ErrorCode.REQUEST_TOO_LARGE
    # Content-Length says there is a body; Envoy sent none: deciding without it
    # would judge params the tool never sees.
    unsent = req(
        "POST", "/x", headers=(("content-type", "application/json"), ("content-length", "20"))
    )
    assert refused(None, unsent).code is ErrorCode.REQUEST_MALFORMED
    chunked = req("POST", "/x", headers=(("transfer-encoding", "chunked"),))
    assert refused(None, chunked).code is ErrorCode.REQUEST_MALFORMED


@pytest.mark.parametrize("lengths", [("1", "2"), ("-1",), ("1e3",), ("١",)])
def test_bad_content_length_is_ambiguous(lengths: tuple[str, ...]) -> None:
    headers = tuple(("content-length", v) for v in lengths)
    request = req(
        "POST", "/x", headers=(("content-type", "application/json"), *headers), body=b"{}"
    )
    assert refused(None, request).code is ErrorCode.REQUEST_AMBIGUOUS_LENGTH


def test_malformed_query_is_refused() -> None:
    assert refused(None, req("GET", "/x?a=%ff")).code is ErrorCode.REQUEST_MALFORMED
    many = "&".join(f"k{i}=v" for i in range(1001))
    assert refused(None, req("GET", f"/x?{many}")).code is ErrorCode.REQUEST_MALFORMED


def test_long_default_tool_name_is_refused_not_truncated() -> None:
    assert refused(None, req("GET", "/" + "a" * 300)).code is ErrorCode.CALL_TOO_LARGE


# -- configuration -----------------------------------------------------------------------


def test_from_dict_round_trip_of_every_field() -> None:
    config = MappingConfig.from_dict(
        {
            "tenant_header": "x-t",
            "agent_header": "x-a",
            "parent_chain_header": "x-c",
            "session_header": "x-s",
            "credentials_header": "x-aegis-authorization",
            "default_tool": "egress.{method}",
            "query_params": "ignore",
            "non_json_body": "ignore",
            "max_body_bytes": 4096,
            "default_scheme": "http",
            "routes": [
                {
                    "name": "r",
                    "methods": ["GET"],
                    "hosts": ["h"],
                    "path": "/x",
                    "tool": "t",
                    "kind": "write",
                    "path_params": False,
                    "non_json_body": "refuse",
                }
            ],
        }
    )
    assert config.max_body_bytes == 4096
    assert config.routes[0] == RouteRule(
        name="r",
        methods=frozenset({"GET"}),
        hosts=("h",),
        path="/x",
        tool="t",
        kind=ToolKind.WRITE,
        non_json_body=config.routes[0].non_json_body,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tenant_heder": "x"}, "unknown key"),
        ({"routes": [{"paht": "/x"}]}, "unknown key"),
        ({"routes": {}}, "routes must be a list"),
        ({"tenant_header": "X-Tenant"}, "lower-case header name"),
        ({"tenant_header": "x tenant"}, "lower-case header name"),
        ({"max_body_bytes": 0}, "positive"),
        ({"max_body_bytes": True}, "integer"),
        ({"query_params": "sometimes"}, "one of"),
        ({"default_scheme": "ftp"}, "http or https"),
        ({"default_tool": "http:{verb}"}, "unknown placeholder"),
        ({"default_tool": "{method.__class__}"}, "unknown placeholder"),
        ({"default_tool": "{method!r}"}, "no format"),
        ({"default_tool": "{method:>10}"}, "no format"),
        ({"default_tool": "{method"}, "default_tool"),
        ({"default_tool": "  "}, "empty"),
        ({"routes": [{"path": "/a", "path_prefix": "/a"}]}, "one of path"),
        ({"routes": [{"path": "a"}]}, "starts with '/'"),
        ({"routes": [{"path": "/**/x"}]}, "last segment"),
        ({"routes": [{"path": "/{a}/{a}"}]}, "repeated"),
        ({"routes": [{"path": "/x{a}"}]}, "whole segment"),
        ({"routes": [{"path": "/{a=x}"}]}, "only '*' or '**'"),
        ({"routes": [{"path": "/{host}"}]}, "shadow built-in"),
        ({"routes": [{"path_regex": "(a)\\1"}]}, "RE2"),
        ({"routes": [{"path_regex": "(?=a)"}]}, "RE2"),
        ({"routes": [{"path": "/x", "tool": "t.{nope}"}]}, "unknown placeholder"),
        ({"routes": [{"methods": ["G ET"]}]}, "not an HTTP method"),
        ({"routes": [{"methods": "GET"}]}, "list of strings"),
        ({"routes": [{"hosts": ["bad host"]}]}, "not a host pattern"),
        ({"routes": [{"path_prefix": "x"}]}, "must start with '/'"),
        ({"routes": [{"path_params": True}]}, "path_params needs"),
        ({"routes": [{"path_params": "yes", "path": "/x"}]}, "true or false"),
        ({"routes": [{"kind": "execute"}]}, "one of"),
        ({"routes": [{"tool": 5}]}, "must be a string"),
        ({"routes": ["/x"]}, "must be a mapping"),
    ],
)
def test_bad_configuration_fails_at_load_time(data: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingConfigError, match=re.escape(message)):
        MappingConfig.from_dict(data)


def test_from_dict_rejects_a_non_mapping() -> None:
    with pytest.raises(MappingConfigError):
        MappingConfig.from_dict(["routes"])  # type: ignore[arg-type]


# -- fuzz ------------------------------------------------------------------------------------

_header_names = st.sampled_from(
    [
        "x-aegis-tenant",
        "x-aegis-agent-id",
        "x-aegis-parent-chain",
        "x-aegis-session",
        "authorization",
        "content-type",
        "content-length",
        "transfer-encoding",
        "traceparent",
        "tracestate",
        "x-request-id",
        "x-other",
    ]
)
_json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
).map(lambda v: json.dumps(v).encode())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "get", "", "G T", "DELETE"])
    | st.text(max_size=8),
    target=st.from_regex(r"\A/[a-z0-9%/._~?=&+-]{0,40}\Z") | st.text(max_size=40),
    authority=st.sampled_from(["api.example.com", "h:8443", "[::1]", ""]) | st.text(max_size=20),
    headers=st.lists(st.tuples(_header_names, st.text(max_size=40)), max_size=8),
    body=st.none() | st.binary(max_size=64) | _json_bodies,
    truncated=st.booleans(),
    routes=st.booleans(),
)
def test_fuzz_any_request_maps_or_is_refused(
    method: str,
    target: str,
    authority: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    truncated: bool,
    routes: bool,
) -> None:
    request = EnvoyRequest(
        method, target, authority, "https", (*IDENT, *headers), body, body_truncated=truncated
    )
    result = RequestMapper(ROUTES if routes else MappingConfig()).map(request)
    assert isinstance(result, MappedCall | MappingRefusal)
    if isinstance(result, MappedCall):
        assert result.call.tool and result.call.tenant and result.call.agent_id
        assert not truncated
        assert result.call.destination is not None
        assert result.call.destination.startswith("https://")
    else:
        assert str(result.code).split(".")[0] in {"request", "call", "identity"}
