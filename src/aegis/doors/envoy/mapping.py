"""From an HTTP request seen by Envoy to one ToolCall: the mapping every Envoy mode shares.

Envoy hands Aegis an HTTP request -- ext_authz as a ``CheckRequest`` or a mirrored
HTTP request, ext_proc as headers then the buffered body. Each mode turns it
into an :class:`EnvoyRequest`, and :class:`RequestMapper` turns that into a
:class:`~aegis.core.call.ToolCall`, or into a :class:`MappingRefusal` with a stable
code when it cannot be decided (refused, never allowed). The mapping is data,
:class:`MappingConfig`; docs/doors/envoy.md documents it. What goes where:

* ``tool``: the first route whose ``methods``, ``hosts`` and path test match
  names it; otherwise ``default_tool`` (``http:{method} {host}{path}``). Both are
  templates over ``{method}``, ``{scheme}``, ``{host}`` (lower-case, no port),
  ``{port}``, ``{authority}`` (host and a non-default port), ``{path}``
  (normalised, no query) and the variables the route's path captured.
* ``kind``: GET, HEAD and OPTIONS read (RFC 9110 §9.2.1 safe methods); any other
  method writes, unless the route says ``kind``. The policy's own tool
  declaration still decides fail modes: a request cannot make a write fail open.
* ``params``: the JSON body's members (a non-object JSON body is ``params.body``),
  the query parameters (a repeated one is a list), and with ``path_params`` the
  route's path variables. A name from two places is refused: "body says 10,
  query says 10000" is parameter pollution, and the policy must see what the
  tool acts on.
* ``destination``: ``scheme://host[:port]/path`` -- no query, which may carry
  secrets; policies test hosts and paths.
* identity from headers: tenant, agent, parent chain (root first, comma
  separated), session; ``Authorization: Bearer`` goes to
  ``RequestContext.credentials`` for the identity stage to verify. Until that
  stage runs with tokens, something the operator trusts (the agent's sidecar, an
  Envoy ``request_headers_to_add``) must set these headers.
* ``traceparent`` / ``tracestate`` when well formed (W3C Trace Context).

The path is normalised before any route sees it (request.normalize_path), so
``/v1/%63harges`` or ``/v1/x/../charges`` cannot dodge a route for ``/v1/charges``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from aegis.core.call import ToolCall, ToolKind, parse_call
from aegis.doors.envoy.config import (
    DEFAULT_TOOL_TEMPLATE,
    MappingConfig,
    NonJsonBody,
    QueryParams,
    RouteRule,
)
from aegis.doors.envoy.request import (
    DEFAULT_PORTS,
    TCHAR,
    EnvoyRequest,
    MappingRefusal,
    RefusedError,
    content_length,
    content_type,
    is_json_media_type,
    normalize_path,
    parse_json_body,
    parse_query,
    single_header,
    split_authority,
    trace_context,
)
from aegis.doors.envoy.routes import (
    BUILTIN_PLACEHOLDERS,
    CompiledRoute,
    MappingConfigError,
    ToolTemplate,
    compile_route,
)
from aegis.errors import CallError, ErrorCode

#: RFC 9110 §9.2.1 safe methods (TRACE aside: gateways refuse it, and it is no read).
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# The policy language's Identifier (aegis.policy.model): a tenant or agent id. No
# comma, so Envoy's merging of repeated headers into "a,b" cannot pass for one id.
_IDENT_FIRST: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_IDENT_REST: Final = _IDENT_FIRST | frozenset("_.:-/")
_IDENT_MAX: Final = 128


class BodyShape(StrEnum):
    NONE = "none"  # no body
    OBJECT = "object"  # a JSON object: its members are params
    VALUE = "value"  # any other JSON value: params["body"]
    OPAQUE = "opaque"  # a non-JSON body the route lets through unread


@dataclass(frozen=True, slots=True)
class MappedCall:
    """The call, and where each parameter came from: ext_proc needs that to write a
    sanitized request back, and to know when it cannot."""

    call: ToolCall
    credentials: str | None
    remote_addr: str | None
    request_id: str | None
    body_shape: BodyShape
    body_keys: tuple[str, ...]
    query_keys: tuple[str, ...]
    path_keys: frozenset[str]
    raw_path: str  # the target's path as received (a query rewrite keeps it)


@dataclass(frozen=True, slots=True)
class _Identity:
    tenant: str
    agent_id: str
    chain: tuple[str, ...]
    session: str
    credentials: str | None


class RequestMapper:
    """A compiled :class:`MappingConfig`. ``map`` never raises, whatever the request."""

    def __init__(self, config: MappingConfig) -> None:
        self.config = config
        self._routes = tuple(compile_route(rule, i) for i, rule in enumerate(config.routes))
        self._default_tool = ToolTemplate.parse(
            config.default_tool, BUILTIN_PLACEHOLDERS, "default_tool"
        )

    def map(self, request: EnvoyRequest) -> MappedCall | MappingRefusal:
        try:
            return self._map(request)
        except RefusedError as refused:
            return refused.refusal
        except CallError as exc:  # parse_call's verdict on the assembled call
            return MappingRefusal(
                exc.code, f"{exc.message} ({exc.path})" if exc.path else exc.message
            )

    def _map(self, req: EnvoyRequest) -> MappedCall:
        config = self.config
        if not req.method or not set(req.method) <= TCHAR:
            raise RefusedError(ErrorCode.REQUEST_MALFORMED, "the request method is not a token")
        identity = _identity(req, config)
        scheme = (req.scheme or config.default_scheme).lower()
        if scheme not in DEFAULT_PORTS:
            raise RefusedError(ErrorCode.REQUEST_MALFORMED, f"unsupported scheme {scheme!r}")
        host, port = split_authority(req.authority)
        raw_path, _, query = req.target.partition("?")
        path = normalize_path(raw_path)

        route, variables = self._route(req.method, host, path)
        values = {
            "method": req.method,
            "scheme": scheme,
            "host": host,
            "port": port,
            "authority": host if port in {"", DEFAULT_PORTS[scheme]} else f"{host}:{port}",
            "path": path,
            **variables,
        }
        template = route.tool if route and route.tool else self._default_tool
        kind = route.rule.kind if route and route.rule.kind else _kind_of(req.method)

        non_json = (route.rule.non_json_body if route else None) or config.non_json_body
        shape, params = self._body(req, non_json)
        body_keys = tuple(params)
        query_keys: tuple[str, ...] = ()
        if config.query_params is QueryParams.MERGE and query:
            query_params = parse_query(query)
            query_keys = tuple(query_params)
            _merge(params, query_params, "the query")
        path_keys: frozenset[str] = frozenset()
        if route and route.rule.path_params:
            path_keys = frozenset(variables)
            _merge(params, variables, "the path")

        traceparent, tracestate = trace_context(req)
        call = parse_call(
            {
                "tenant": identity.tenant,
                "agent_id": identity.agent_id,
                "tool": template.render(values),
                "params": params,
                "kind": str(kind),
                "parent_chain": list(identity.chain),
                "session_id": identity.session or None,
                "destination": f"{scheme}://{host}{':' + port if port else ''}{path}",
                "traceparent": traceparent or None,
                "tracestate": tracestate or None,
            }
        )
        return MappedCall(
            call=call,
            credentials=identity.credentials,
            remote_addr=req.source_address,
            request_id=req.request_id or single_header(req, "x-request-id"),
            body_shape=shape,
            body_keys=body_keys,
            query_keys=query_keys,
            path_keys=path_keys,
            raw_path=raw_path,
        )

    def _route(
        self, method: str, host: str, path: str
    ) -> tuple[CompiledRoute | None, dict[str, str]]:
        for route in self._routes:
            variables = route.match(method, host, path)
            if variables is not None:
                return route, variables
        return None, {}

    def _body(self, req: EnvoyRequest, non_json: NonJsonBody) -> tuple[BodyShape, dict[str, Any]]:
        length = content_length(req)
        media_type, charset = content_type(req)
        is_json = is_json_media_type(media_type)
        if req.body_truncated:
            raise RefusedError(
                ErrorCode.REQUEST_TOO_LARGE,
                "Envoy forwarded part of the body (x-envoy-auth-partial-body: true); "
                "a call is decided on its whole body",
            )
        body = req.body
        if body is not None and len(body) > self.config.max_body_bytes:
            raise RefusedError(
                ErrorCode.REQUEST_TOO_LARGE,
                f"the body is larger than {self.config.max_body_bytes} bytes",
            )
        if not body:
            expects_body = bool(length) or bool(req.header_values("transfer-encoding"))
            if expects_body and (is_json or non_json is NonJsonBody.REFUSE):
                # A body Envoy did not send us: deciding without it would judge
                # params the tool never sees, and let the real ones through unread.
                raise RefusedError(
                    ErrorCode.REQUEST_MALFORMED,
                    "the request has a body Envoy did not forward "
                    "(set with_request_body, or request_body_mode: BUFFERED)",
                )
            return BodyShape.NONE, {}
        if not is_json:
            if non_json is NonJsonBody.IGNORE:
                return BodyShape.OPAQUE, {}
            raise RefusedError(
                ErrorCode.REQUEST_UNSUPPORTED_MEDIA_TYPE,
                f"a body of type {media_type or '(none)'!r} cannot be checked; send JSON",
            )
        if charset not in {"", "utf-8", "utf8"}:
            # RFC 8259 §8.1: JSON exchanged between systems is UTF-8.
            raise RefusedError(ErrorCode.REQUEST_UNSUPPORTED_MEDIA_TYPE, "JSON must be UTF-8")
        value = parse_json_body(body)
        if isinstance(value, dict):
            return BodyShape.OBJECT, value
        return BodyShape.VALUE, {"body": value}


def _kind_of(method: str) -> ToolKind:
    return ToolKind.READ if method in READ_METHODS else ToolKind.WRITE


def _ident(value: str, name: str) -> str:
    if (
        not value
        or len(value) > _IDENT_MAX
        or value[0] not in _IDENT_FIRST
        or not set(value) <= _IDENT_REST
    ):
        raise RefusedError(
            ErrorCode.REQUEST_INVALID_HEADER,
            f"{name} must be an identifier (letters, digits, '_.:-/'; at most {_IDENT_MAX})",
        )
    return value


def _identity(req: EnvoyRequest, config: MappingConfig) -> _Identity:
    tenant = single_header(req, config.tenant_header)
    agent = single_header(req, config.agent_header)
    if not tenant or not agent:
        missing = config.tenant_header if not tenant else config.agent_header
        raise RefusedError(ErrorCode.IDENTITY_MISSING, f"the request has no {missing} header")
    chain_text = single_header(req, config.parent_chain_header)
    chain: tuple[str, ...] = ()
    if chain_text:
        chain = tuple(
            _ident(p.strip(" \t"), config.parent_chain_header) for p in chain_text.split(",")
        )
    session = single_header(req, config.session_header) or ""
    credentials = None
    auth = single_header(req, config.credentials_header)
    if auth:
        scheme, _, token = auth.partition(" ")
        # RFC 6750 §2.1: the "Bearer" scheme (case-insensitive), then the token.
        if scheme.lower() == "bearer" and token.strip():
            credentials = token.strip()
    return _Identity(
        tenant=_ident(tenant, config.tenant_header),
        agent_id=_ident(agent, config.agent_header),
        chain=chain,
        session=_ident(session, config.session_header) if session else "",
        credentials=credentials,
    )


def _merge(params: dict[str, Any], extra: dict[str, Any], where: str) -> None:
    for key, value in extra.items():
        if key in params:
            raise RefusedError(
                ErrorCode.REQUEST_MALFORMED,
                f"parameter {key!r} is given twice (again in {where}); the tool could read either",
            )
        params[key] = value


__all__ = [
    "DEFAULT_TOOL_TEMPLATE",
    "READ_METHODS",
    "BodyShape",
    "EnvoyRequest",
    "MappedCall",
    "MappingConfig",
    "MappingConfigError",
    "MappingRefusal",
    "NonJsonBody",
    "QueryParams",
    "RequestMapper",
    "RouteRule",
]
