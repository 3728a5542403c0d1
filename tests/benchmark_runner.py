"""Running a benchmark as its smoke tests do: ``python -m benchmarks.<name> ARGS``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(name: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run it from the repository root (bounded in time); it must exit 0 and print
    exactly one JSON document on stdout, which is returned."""
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict)
    return doc
