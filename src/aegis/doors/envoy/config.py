"""The Envoy mapping configuration: frozen values, and the from-dict loader settings call.

The format, field by field, is in docs/doors/envoy.md ("The mapping"). Unknown
keys and wrong types are load errors (a typo must not silently drop a route),
and ``MappingConfig.from_dict`` compiles every route once, so a bad template or
an RE2 pattern RE2 cannot run fails at startup rather than on a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeVar

from aegis.core.call import ToolKind
from aegis.doors.envoy.request import DEFAULT_PORTS, TCHAR
from aegis.doors.envoy.routes import (
    BUILTIN_PLACEHOLDERS,
    MappingConfigError,
    ToolTemplate,
    compile_route,
)

DEFAULT_TOOL_TEMPLATE: Final = "http:{method} {host}{path}"
_E = TypeVar("_E", bound=StrEnum)


class QueryParams(StrEnum):
    """Whether query parameters become call params (``merge``) or are not looked at."""

    MERGE = "merge"
    IGNORE = "ignore"


class NonJsonBody(StrEnum):
    """What to do with a body that is not JSON.

    Its contents are invisible to policy, and many frameworks parse JSON whatever
    the content-type says, so the default refuses it (415); ``ignore`` decides on
    the rest of the request (for uploads a route knows to be harmless).
    """

    REFUSE = "refuse"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One mapping route. Every test given must hold; a rule with none matches all."""

    name: str = ""
    methods: frozenset[str] = frozenset()
    hosts: tuple[str, ...] = ()
    path: str | None = None  # Envoy uri_template: /a/{x}/*/{rest=**}
    path_prefix: str | None = None
    path_regex: str | None = None  # RE2 over the whole path; named groups are variables
    tool: str | None = None  # template; None: the config's default_tool
    kind: ToolKind | None = None  # None: from the method
    path_params: bool = False  # add the path variables to params
    non_json_body: NonJsonBody | None = None  # None: the config's setting

    def __post_init__(self) -> None:
        label = repr(self.name) if self.name else "(unnamed)"
        if sum(p is not None for p in (self.path, self.path_prefix, self.path_regex)) > 1:
            raise MappingConfigError(f"route {label}: give one of path, path_prefix, path_regex")
        for method in self.methods:
            if not method or not set(method) <= TCHAR:
                raise MappingConfigError(f"route {label}: {method!r} is not an HTTP method")
        if self.path_params and self.path is None and self.path_regex is None:
            raise MappingConfigError(f"route {label}: path_params needs a path or path_regex")


@dataclass(frozen=True, slots=True)
class MappingConfig:
    """How Envoy requests become ToolCalls (docs/doors/envoy.md, "The mapping")."""

    tenant_header: str = "x-aegis-tenant"
    agent_header: str = "x-aegis-agent-id"
    parent_chain_header: str = "x-aegis-parent-chain"
    session_header: str = "x-aegis-session"
    credentials_header: str = "authorization"
    default_tool: str = DEFAULT_TOOL_TEMPLATE
    routes: tuple[RouteRule, ...] = ()
    query_params: QueryParams = QueryParams.MERGE
    non_json_body: NonJsonBody = NonJsonBody.REFUSE
    max_body_bytes: int = 1 << 20
    default_scheme: str = "https"

    def __post_init__(self) -> None:
        for name in _HEADER_FIELDS:
            value = getattr(self, name)
            if not value or value != value.lower() or not set(value) <= TCHAR:
                raise MappingConfigError(f"{name} must be a lower-case header name, not {value!r}")
        if isinstance(self.max_body_bytes, bool) or self.max_body_bytes <= 0:
            raise MappingConfigError("max_body_bytes must be a positive integer")
        if self.default_scheme not in DEFAULT_PORTS:
            raise MappingConfigError("default_scheme must be http or https")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MappingConfig:
        """Build from settings data (parsed YAML/JSON) and compile it once."""
        config = _config_from_dict(data)
        config.validate()
        return config

    def validate(self) -> None:
        """Compile every template and route; raise MappingConfigError on the first problem."""
        ToolTemplate.parse(self.default_tool, BUILTIN_PLACEHOLDERS, "default_tool")
        for index, rule in enumerate(self.routes):
            compile_route(rule, index)


_HEADER_FIELDS: Final = (
    "tenant_header",
    "agent_header",
    "parent_chain_header",
    "session_header",
    "credentials_header",
)
_STRING_FIELDS: Final = (*_HEADER_FIELDS, "default_tool", "default_scheme")
_CONFIG_KEYS: Final = frozenset(
    {*_STRING_FIELDS, "routes", "query_params", "non_json_body", "max_body_bytes"}
)
_ROUTE_STRINGS: Final = ("path", "path_prefix", "path_regex", "tool")
_ROUTE_KEYS: Final = frozenset(
    {*_ROUTE_STRINGS, "name", "methods", "hosts", "kind", "path_params", "non_json_body"}
)


def _config_from_dict(data: Mapping[str, Any]) -> MappingConfig:
    if not isinstance(data, Mapping):
        raise MappingConfigError("the Envoy mapping must be a mapping")
    _no_unknown(data, _CONFIG_KEYS, "mapping")
    kwargs: dict[str, Any] = {k: _string(data[k], k) for k in _STRING_FIELDS if k in data}
    if "max_body_bytes" in data:
        value = data["max_body_bytes"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise MappingConfigError("max_body_bytes must be an integer")
        kwargs["max_body_bytes"] = value
    if "query_params" in data:
        kwargs["query_params"] = _enum(QueryParams, data["query_params"], "query_params")
    if "non_json_body" in data:
        kwargs["non_json_body"] = _enum(NonJsonBody, data["non_json_body"], "non_json_body")
    routes = data.get("routes", [])
    if not isinstance(routes, list):
        raise MappingConfigError("routes must be a list")
    kwargs["routes"] = tuple(_route_from_dict(r, i) for i, r in enumerate(routes))
    return MappingConfig(**kwargs)


def _route_from_dict(data: object, index: int) -> RouteRule:
    where = f"routes[{index}]"
    if not isinstance(data, Mapping):
        raise MappingConfigError(f"{where} must be a mapping")
    _no_unknown(data, _ROUTE_KEYS, where)
    lists = {}
    for key in ("methods", "hosts"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MappingConfigError(f"{where}.{key} must be a list of strings")
        lists[key] = value
    path_params = data.get("path_params", False)
    if not isinstance(path_params, bool):
        raise MappingConfigError(f"{where}.path_params must be true or false")
    return RouteRule(
        name=_string(data.get("name", ""), f"{where}.name"),
        methods=frozenset(lists["methods"]),
        hosts=tuple(lists["hosts"]),
        kind=_enum(ToolKind, data["kind"], f"{where}.kind") if "kind" in data else None,
        path_params=path_params,
        non_json_body=(
            _enum(NonJsonBody, data["non_json_body"], f"{where}.non_json_body")
            if "non_json_body" in data
            else None
        ),
        **{k: _string(data[k], f"{where}.{k}") for k in _ROUTE_STRINGS if data.get(k) is not None},
    )


def _no_unknown(data: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise MappingConfigError(f"{where}: unknown key(s): {', '.join(unknown)}")


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise MappingConfigError(f"{where} must be a string")
    return value


def _enum(enum: type[_E], value: object, where: str) -> _E:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return enum(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise MappingConfigError(f"{where} must be one of: {allowed}") from None
