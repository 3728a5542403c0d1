"""docs/telemetry.md names every span attribute, metric, log event and tracing setting
the code has, and nothing the code does not have.

The names are read from the source (AST), not from a list kept here: a new attribute,
metric or log event without its row in the document fails this test.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

import aegis
from aegis.settings import TracingSettings

SRC = Path(aegis.__file__).parent
DOC = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"
_ROW = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)
_EVENT = re.compile(r"^[a-z_]+(\.[a-z_]+)*$")
_LOG_METHODS = {"debug", "info", "warning", "error"}


def _section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _rows(title: str) -> list[str]:
    return _ROW.findall(_section(title))


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def _string(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def span_attributes() -> set[str]:
    tree = ast.parse((SRC / "telemetry" / "evidence.py").read_text(encoding="utf-8"))
    return {
        value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(value := node.value, str)
        and re.fullmatch(r"aegis\.[a-z_.]+", value)
    }


def metric_names() -> set[str]:
    """Exposed names: counters with _total (prometheus_client adds it)."""
    found = set()
    for _, tree in _modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"Counter", "Histogram", "Gauge"}
                and node.args
                and (name := _string(node.args[0]))
            ):
                found.add(f"{name}_total" if node.func.id == "Counter" else name)
    return found


def log_events() -> set[str]:
    """First argument of every JsonLog call (log.info(...), self._log(...) helpers)."""
    found = set()
    for _, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            method = node.func.attr
            on_a_log = method in _LOG_METHODS and "log" in ast.unparse(node.func.value).lower()
            # method "_log": a door's helper around its JsonLog (envoy's gate).
            if not node.args or not (on_a_log or method == "_log"):
                continue
            event = _string(node.args[0])
            if event is not None and _EVENT.fullmatch(event):
                found.add(event)
    return found


def _leaf_keys(model: type[BaseModel], prefix: str) -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _leaf_keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_the_extraction_finds_what_it_should() -> None:
    # Guards the AST walks themselves: a broken walk must not pass vacuously.
    assert {"aegis.decision_id", "aegis.redacted_fields", "aegis.error"} <= span_attributes()
    assert {"aegis_decisions_total", "aegis_decision_latency_seconds"} <= metric_names()
    assert {"decision", "gateway.started", "request.refused", "proxy.started"} <= log_events()


@pytest.mark.parametrize(
    ("section", "names"),
    [
        ("Spans", span_attributes),
        ("Metrics", metric_names),
        ("Logs", log_events),
        ("Configuration", lambda: _leaf_keys(TracingSettings, "tracing.")),
    ],
    ids=["span attributes", "metrics", "log events", "tracing settings"],
)
def test_the_document_matches_the_code(section: str, names: Callable[[], set[str]]) -> None:
    in_code = names()
    rows = _rows(section)
    assert len(rows) == len(set(rows)), f"{section}: a row is there twice"
    missing = sorted(in_code - set(rows))
    unknown = sorted(set(rows) - in_code)
    assert not missing, f"docs/telemetry.md, {section}: no row for {missing}"
    assert not unknown, f"docs/telemetry.md, {section}: rows for names the code lacks {unknown}"


def test_relative_links_resolve() -> None:
    text = DOC.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", text)
    assert links
    for link in links:
        assert (DOC.parent / link).exists(), link
