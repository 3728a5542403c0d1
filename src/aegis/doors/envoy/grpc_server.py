"""The grpc.aio server the Envoy gRPC services run in: start on an address, stop with grace."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from aegis.doors.envoy._proto import grpc

#: Room for headers and attributes on top of the largest body a message may carry.
MESSAGE_OVERHEAD_BYTES: Final = 256 * 1024

Register = Callable[[Any], None]


class GrpcDoorServer:
    """One grpc.aio server carrying the services its builder registered.

    A message larger than ``max_message_bytes`` is refused by gRPC itself with
    RESOURCE_EXHAUSTED, before any of our code runs; Envoy counts that as an
    authorization error and fails closed (``failure_mode_allow: false``).
    """

    def __init__(self, services: Sequence[Register], *, max_message_bytes: int) -> None:
        self._services = tuple(services)
        self.max_message_bytes = max_message_bytes
        self._server: Any = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind and serve; returns the bound port (an ephemeral one for ``port=0``)."""
        if self._server is not None:
            raise RuntimeError("the server is already started")
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", self.max_message_bytes),
                # Two servers must never share a port by accident (tests, restarts).
                ("grpc.so_reuseport", 0),
            ]
        )
        for register in self._services:
            register(server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        bound = int(server.add_insecure_port(address))
        if bound == 0:
            raise OSError(f"could not bind {address}")
        await server.start()
        self._server, self.port = server, bound
        return bound

    async def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting; let RPCs in flight finish for up to ``grace`` seconds."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
