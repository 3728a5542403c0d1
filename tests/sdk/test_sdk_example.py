"""The runnable example in examples/sdk runs and shows each outcome."""

from __future__ import annotations

import os
import subprocess
import sys

from sdk_standin import EXAMPLES

SCRIPT = EXAMPLES / "sdk" / "langchain_guarded_tools.py"


def test_langchain_example_runs(tmp_path: object) -> None:
    # From another working directory: the script finds its policy by its own path.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    out = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=str(tmp_path),
        env=env,
    )
    assert out.stderr == ""
    lines = out.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "allowed",
        "allowed",
        "approval needed",
        "denied",
        "tool message",
    ]
    assert "balance: 12,400.00 USD" in lines[0]
    assert "payment of 120.00 USD to acct_123 sent" in lines[1]
    assert "ask payments-desk, ticket apr_" in lines[2]
    assert "decision.default_deny" in lines[3]
    assert "status=error" in lines[4] and '"code":"decision.approval_required"' in lines[4]
