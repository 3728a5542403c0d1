"""The folder tree is the architecture (DESIGN.md §2); these rules keep it so.

* the core and the services (core, policy, net, dlp, pipeline, telemetry, http,
  audit, identity, storage, control, settings, errors) never import a door, the server, the CLI or the SDK, nor the
  OpenTelemetry SDK (the API is fine);
* doors never import each other;
* only the CLI reads the environment; everything else gets settings passed in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aegis

SRC = Path(aegis.__file__).parent
INNER = (
    "core",
    "policy",
    "net",
    "dlp",
    "pipeline",
    "telemetry",
    "http",
    "audit",
    "identity",
    "storage",
    "control",
    "bundles",
    "settings.py",
    "errors.py",
)
OUTER = ("aegis.doors", "aegis.server", "aegis.cli", "aegis.sdk", "opentelemetry.sdk")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules_under(part: str) -> list[Path]:
    target = SRC / part
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


@pytest.mark.parametrize("part", INNER)
def test_inner_layers_never_import_outer_ones(part: str) -> None:
    offenders = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in modules_under(part)
        for name in imports_of(path)
        if name.startswith(OUTER)
    ]
    assert not offenders


def test_doors_never_import_each_other() -> None:
    doors = [p.name for p in (SRC / "doors").iterdir() if p.is_dir() and not p.name.startswith("_")]
    assert {"api", "envoy", "proxy", "mcp"} <= set(doors)
    offenders = []
    for door in doors:
        for path in (SRC / "doors" / door).rglob("*.py"):
            for name in imports_of(path):
                other = name.split(".")[2] if name.startswith("aegis.doors.") else None
                if other is not None and other != door:
                    offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert not offenders


def test_only_the_cli_reads_the_environment() -> None:
    """Configuration is parsed once into settings; no os.getenv scattered around."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).parts[0] == "cli" or path.name == "__main__.py":
            continue  # entry points capture the environment and pass it down
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not offenders
