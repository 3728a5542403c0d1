"""The public surface of aegis.doors.envoy is what is meant (httpx's __all__ test)."""

from __future__ import annotations

from aegis.doors import envoy

EXPECTED = {
    "DEFAULT_TOOL_TEMPLATE",
    "DOOR_AUTHZ_GRPC",
    "DOOR_AUTHZ_HTTP",
    "DOOR_EXT_PROC",
    "Answer",
    "AuthzSanitize",
    "EnvoyRequest",
    "GrpcDoorServer",
    "MappedCall",
    "MappingConfig",
    "MappingConfigError",
    "MappingRefusal",
    "NonJsonBody",
    "QueryParams",
    "RequestMapper",
    "RouteRule",
    "build_authz_grpc_server",
    "build_authz_http_handler",
    "build_envoy_grpc_server",
    "build_ext_proc_server",
}


def test_all_is_the_intended_api() -> None:
    assert set(envoy.__all__) == EXPECTED
    for name in envoy.__all__:
        assert getattr(envoy, name) is not None


def test_the_door_imports_no_other_door() -> None:
    """DESIGN.md §2: doors never import each other."""
    from pathlib import Path

    source = Path(envoy.__file__).parent
    for path in source.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines():
            if line.startswith(("import aegis.doors.", "from aegis.doors.")):
                assert line.split()[1].startswith("aegis.doors.envoy"), (path.name, line)
