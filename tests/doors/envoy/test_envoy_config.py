"""docs/envoy/: the Envoy configuration parses against Envoy's own protos, says what the
guide says it says, and the mapping beside it loads and maps the routes it names.

No Envoy binary is available here (`envoy --mode validate` would be the stronger
check); parsing into ``envoy.config.bootstrap.v3.Bootstrap`` with the official
xds-protos catches unknown fields, wrong types, bad enum names and unresolvable
``@type`` URLs, which is most of what goes wrong in a hand-written config.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy_rig import REPO
from google.protobuf import json_format

from aegis.doors.envoy import EnvoyRequest, MappedCall, MappingConfig, RequestMapper

DOCS = REPO / "docs" / "envoy"
# Every typed_config the example uses must be importable for Any to resolve.
_TYPES = [
    "envoy.config.bootstrap.v3.bootstrap_pb2",
    "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
    "envoy.extensions.filters.http.ext_authz.v3.ext_authz_pb2",
    "envoy.extensions.filters.http.ext_proc.v3.ext_proc_pb2",
    "envoy.extensions.filters.http.router.v3.router_pb2",
    "envoy.extensions.upstreams.http.v3.http_protocol_options_pb2",
    "envoy.extensions.transport_sockets.tls.v3.tls_pb2",
]


def _load(name: str) -> Any:
    return yaml.safe_load((DOCS / name).read_text(encoding="utf-8"))


def _bootstrap() -> Any:
    modules = [importlib.import_module(m) for m in _TYPES]
    message = modules[0].Bootstrap()
    json_format.ParseDict(_load("envoy.yaml"), message)  # raises on any mismatch
    return message


def _filters(listener: Any) -> dict[str, Any]:
    (chain,) = listener.filter_chains
    (network,) = chain.filters
    hcm = _unpack(network.typed_config)
    return {f.name: _unpack(f.typed_config) for f in hcm.http_filters}, hcm


def _unpack(any_message: Any) -> Any:
    from google.protobuf import symbol_database

    name = any_message.type_url.split("/")[-1]
    message = symbol_database.Default().GetSymbol(name)()
    assert any_message.Unpack(message)
    return message


def test_envoy_yaml_parses_as_a_bootstrap() -> None:
    bootstrap = _bootstrap()
    names = {listener.name for listener in bootstrap.static_resources.listeners}
    assert names == {"agents_grpc_authz", "agents_http_authz"}
    clusters = {c.name for c in bootstrap.static_resources.clusters}
    assert {"aegis", "aegis_http"} <= clusters


def test_filters_fail_closed_and_send_the_whole_body() -> None:
    bootstrap = _bootstrap()
    listeners = {listener.name: listener for listener in bootstrap.static_resources.listeners}
    filters, hcm = _filters(listeners["agents_grpc_authz"])
    assert list(filters) == [
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.ext_proc",
        "envoy.filters.http.router",
    ]
    authz = filters["envoy.filters.http.ext_authz"]
    assert authz.failure_mode_allow is False
    assert authz.grpc_service.envoy_grpc.cluster_name == "aegis"
    assert authz.with_request_body.pack_as_bytes
    assert not authz.with_request_body.allow_partial_message
    assert authz.encode_raw_headers
    # Longer than the pipeline's 0.25 s, so fail modes answer rather than Envoy.
    assert authz.grpc_service.timeout.ToMilliseconds() > 250
    proc = filters["envoy.filters.http.ext_proc"]
    assert proc.failure_mode_allow is False
    mode = proc.processing_mode
    assert (mode.request_header_mode, mode.request_body_mode) == (1, 2)  # SEND, BUFFERED
    assert not proc.allow_mode_override
    assert proc.message_timeout.ToMilliseconds() > 250
    assert hcm.normalize_path.value and hcm.merge_slashes
    assert hcm.path_with_escaped_slashes_action == 2  # REJECT_REQUEST

    http_filters, _ = _filters(listeners["agents_http_authz"])
    http_authz = http_filters["envoy.filters.http.ext_authz"]
    assert http_authz.failure_mode_allow is False
    assert http_authz.http_service.path_prefix == "/envoy/authz"
    assert http_authz.with_request_body.max_request_bytes == 1 << 20


def test_every_route_runs_exactly_one_of_the_two_filters() -> None:
    """A request decided by both filters would be decided twice (double limits,
    two approval tickets); one decided by neither would not be decided at all."""
    bootstrap = _bootstrap()
    listener = next(
        x for x in bootstrap.static_resources.listeners if x.name == "agents_grpc_authz"
    )
    _, hcm = _filters(listener)
    seen = 0
    for vhost in hcm.route_config.virtual_hosts:
        for route in vhost.routes:
            disabled = {
                name for name, cfg in route.typed_per_filter_config.items() if _unpack(cfg).disabled
            }
            assert len(disabled) == 1, (vhost.name, route.match)
            seen += 1
    assert seen >= 4


def test_mapping_yaml_loads_and_names_the_tools_the_policies_use() -> None:
    config = MappingConfig.from_dict(_load("mapping.yaml"))
    mapper = RequestMapper(config)
    ident = (("x-aegis-tenant", "acme"), ("x-aegis-agent-id", "a1"))
    json_headers = (*ident, ("content-type", "application/json"), ("content-length", "2"))
    cases = {
        ("POST", "/api/chat.postMessage", "slack.com", b"{}"): "slack.post_message",
        ("POST", "/v1/payment_intents", "api.stripe.com", b"{}"): "stripe.create_payment",
        ("GET", "/v1/balance", "api.stripe.com", None): "stripe.get_balance",
        ("GET", "/v1/customers/cus_42", "api.stripe.com", None): "stripe.get_customer",
        ("GET", "/repos/acme/web/issues", "api.github.com", None): "github.issues.GET",
        ("GET", "/anything", "example-exfil.xyz", None): "http.get",
        ("POST", "/upload", "example-exfil.xyz", b"{}"): "http.request",
    }
    for (method, path, host, body), tool in cases.items():
        headers = json_headers if body else ident
        result = mapper.map(EnvoyRequest(method, path, host, "https", headers, body))
        assert isinstance(result, MappedCall), (path, result)
        assert result.call.tool == tool
    upload = mapper.map(
        EnvoyRequest(
            "PUT",
            "/uploads/a.bin",
            "eu.files.example.com",
            "https",
            (*ident, ("content-type", "application/octet-stream")),
            b"\x00\x01",
        )
    )
    assert isinstance(upload, MappedCall)
    assert upload.call.tool == "files.upload"


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.yaml")), ids=lambda p: Path(p).name)
def test_every_yaml_in_docs_envoy_parses(path: Path) -> None:
    assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict)
