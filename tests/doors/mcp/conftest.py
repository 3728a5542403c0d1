"""Fixtures of the MCP door's tests (the helpers live in mcp_helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # The proxy's HTTP mode runs uvicorn, which needs asyncio.
    return "asyncio"
