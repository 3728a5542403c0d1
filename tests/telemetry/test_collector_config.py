"""docs/telemetry/otel-collector.yaml holds together and matches what the gateway emits.

No Collector binary is available here, so this is a structural check, not a run
(docs/telemetry.md, "Running a Collector"): every component a pipeline names is
defined and every defined one is used; each signal has its receiver and the batch
processor; every listener and scrape target is on loopback and agrees with the
gateway's defaults; the filelog operators map the fields a real decision log line
has (ts, level, trace_id, span_id) and parse its timestamp format.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from aegis.core.call import parse_call
from aegis.pipeline import Pipeline, RequestContext
from aegis.policy import compile_text
from aegis.settings import AegisSettings
from aegis.telemetry import JsonLog, TelemetryEvidence

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "docs" / "telemetry" / "otel-collector.yaml"
SECTIONS = ("receivers", "processors", "exporters")


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return data


def test_every_component_is_defined_and_used(config: dict[str, Any]) -> None:
    assert set(config) == {*SECTIONS, "service"}
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    for name, pipeline in pipelines.items():
        assert set(pipeline) == set(SECTIONS), name
        for section in SECTIONS:
            assert pipeline[section], f"{name}: no {section}"
            for component in pipeline[section]:
                assert component in config[section], f"{name} uses undefined {component}"
                used[section].add(component)
        # batch last: it batches what the other processors produced.
        assert pipeline["processors"][-1] == "batch"
    for section in SECTIONS:
        assert used[section] == set(config[section]), f"unused {section}"
    assert pipelines["traces"]["receivers"] == ["otlp"]
    assert pipelines["metrics"]["receivers"] == ["prometheus"]
    assert pipelines["logs"]["receivers"] == ["filelog"]


def test_the_receivers_meet_the_gateway_defaults(config: dict[str, Any]) -> None:
    defaults = AegisSettings()
    receivers = config["receivers"]
    assert receivers["otlp"]["protocols"]["grpc"]["endpoint"] == defaults.tracing.otlp.endpoint
    (scrape,) = receivers["prometheus"]["config"]["scrape_configs"]
    assert scrape["metrics_path"] == "/metrics"
    assert scrape["static_configs"] == [{"targets": [f"{defaults.api.host}:{defaults.api.port}"]}]


def _endpoints(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(where, value) of every endpoint, target and host in the config."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key in {"endpoint", "host"} and isinstance(value, str):
                yield where, value
            elif key == "targets":
                yield from ((where, target) for target in value)
            else:
                yield from _endpoints(value, where)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _endpoints(item, f"{path}[{i}]")


def _host(value: str) -> str:
    return urlsplit(value if "//" in value else f"//{value}").hostname or ""


def test_nothing_listens_or_scrapes_beyond_loopback(config: dict[str, Any]) -> None:
    found = dict(_endpoints(config))
    # The OTLP listener, the scrape target, the SIEM, the Collector's own metrics.
    assert len(found) == 4, found
    for where, value in found.items():
        host = _host(value)
        if where.startswith("exporters."):
            # Only the SIEM exporter leaves the host: a placeholder that never resolves.
            assert host.endswith(".invalid"), (where, value)  # RFC 2606
        else:
            assert ipaddress.ip_address(host).is_loopback, (where, value)
    siem = config["exporters"]["otlphttp/siem"]
    assert siem["headers"]["authorization"].startswith("Bearer ${env:")  # no literal token


def _decision_line() -> dict[str, Any]:
    """A real decision log line, traced, from the evidence stage."""
    from opentelemetry.sdk.trace import TracerProvider

    policy = compile_text(
        'apiVersion: aegis.dev/v1\nkind: Policy\nmetadata: {name: p, tenant: t, version: "1"}\n'
        "rules: [{id: r, match: {tools: [x]}, effect: allow}]\n"
    )
    stream = io.StringIO()
    evidence = TelemetryEvidence(tracer=TracerProvider().get_tracer("t"), log=JsonLog(stream))
    pipeline = Pipeline.with_defaults(policy, evidence=evidence)
    call = parse_call({"tenant": "t", "agent_id": "a", "tool": "x", "params": {}})
    asyncio.run(pipeline.decide(call, RequestContext(door="test")))
    line: dict[str, Any] = json.loads(stream.getvalue())
    return line


def _gotime_to_regex(layout: str) -> str:
    """The Go reference-time layout elements this config uses, as a regex."""
    parts = {
        "2006": r"\d{4}",
        "01": r"\d{2}",
        "02": r"\d{2}",
        "15": r"\d{2}",
        "04": r"\d{2}",
        "05": r"\d{2}",
        ".999999": r"(\.\d{1,6})?",
        "Z07:00": r"(Z|[+-]\d{2}:\d{2})",
    }
    token = re.compile("|".join(re.escape(k) for k in sorted(parts, key=len, reverse=True)))
    out, pos = [], 0
    for m in token.finditer(layout):
        out.append(re.escape(layout[pos : m.start()]) + parts[m.group()])
        pos = m.end()
    return "".join(out) + re.escape(layout[pos:])


def test_the_filelog_operators_map_our_log_fields(config: dict[str, Any]) -> None:
    filelog = config["receivers"]["filelog"]
    ops = {op["type"]: op for op in filelog["operators"]}
    assert list(ops) == ["json_parser", "trace_parser"]
    parser, tracer = ops["json_parser"], ops["trace_parser"]
    line = _decision_line()

    assert parser["parse_from"] == "body"  # the parsed fields land in attributes
    stamp = parser["timestamp"]
    assert stamp["parse_from"] == "attributes.ts" and stamp["layout_type"] == "gotime"
    assert re.fullmatch(_gotime_to_regex(stamp["layout"]), line["ts"]), line["ts"]
    assert line["ts"].endswith("Z")  # UTC: the layout's zone element reads it so
    datetime.fromisoformat(line["ts"])

    severity = parser["severity"]
    assert severity["parse_from"] == "attributes.level"
    # The stanza default preset maps debug/info/error; "warning" needs the mapping.
    assert severity["mapping"] == {"warn": "warning"}
    assert line["level"] in {"debug", "info", "warning", "error"}

    assert tracer["trace_id"]["parse_from"] == "attributes.trace_id"
    assert tracer["span_id"]["parse_from"] == "attributes.span_id"
    assert "attributes.trace_id != nil" in tracer["if"]
    assert re.fullmatch(r"[0-9a-f]{32}", line["trace_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", line["span_id"])
