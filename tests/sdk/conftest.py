"""Fixtures for the SDK tests: stand-in decision API servers and example policies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sdk_standin import NOW, ServerFactory, StandInServer, example_policy

from aegis.pipeline import Pipeline
from aegis.policy import CompiledPolicy


@pytest.fixture
def serve() -> Iterator[ServerFactory]:
    """Start stand-in servers for a test: ``serve(policy_or_pipeline, **knobs)``."""
    started: list[StandInServer] = []

    def start(policy: CompiledPolicy | Pipeline, **knobs: Any) -> StandInServer:
        pipeline = (
            policy
            if isinstance(policy, Pipeline)
            else Pipeline.with_defaults(policy, clock=lambda: NOW)
        )
        server = StandInServer(pipeline, **knobs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def finance() -> CompiledPolicy:
    return example_policy("finance-payments")


@pytest.fixture(scope="session")
def slack() -> CompiledPolicy:
    return example_policy("slack-posting")
