"""An in-process OTLP/gRPC trace receiver: what an OpenTelemetry Collector's ``otlp``
receiver does with ``TraceService/Export``, minus the pipeline behind it.

It runs a ``grpc.aio`` server on 127.0.0.1 in a thread of its own with its own event
loop, like a Collector in another process: the gateway under test may block its own
loop (``TracerProvider.shutdown()`` flushes synchronously) without starving the
receiver. Requests are kept as decoded protobuf messages, with the gRPC metadata
they arrived with.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import grpc  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it (ids as lower-case hex, W3C style)."""

    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope_name: str
    scope_version: str
    status_code: int


def _value(v: common_pb2.AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which) if which else None


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class OtlpTraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.port = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    # -- the service -------------------------------------------------------------------

    async def Export(  # noqa: N802 - the gRPC method name
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._cond:
            self.requests.append(request)
            self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
            self._cond.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    # -- what arrived ------------------------------------------------------------------

    def spans(self) -> list[ReceivedSpan]:
        with self._cond:
            requests = list(self.requests)
        found = []
        for request in requests:
            for rs in request.resource_spans:
                resource = _attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        found.append(
                            ReceivedSpan(
                                name=s.name,
                                kind=s.kind,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_span_id=s.parent_span_id.hex(),
                                attributes=_attributes(s.attributes),
                                resource=resource,
                                scope_name=ss.scope.name,
                                scope_version=ss.scope.version,
                                status_code=s.status.code,
                            )
                        )
        return found

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                spans = sum(
                    len(ss.spans)
                    for r in self.requests
                    for rs in r.resource_spans
                    for ss in rs.scope_spans
                )
                left = deadline - time.monotonic()
                if spans >= count or left <= 0:
                    break
                self._cond.wait(left)
        return self.spans()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> int:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            server = grpc.aio.server()
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, server)  # type: ignore[no-untyped-call]
            self.port = server.add_insecure_port("127.0.0.1:0")  # loopback only
            await server.start()
            self._stop = asyncio.Event()
            ready.set()
            try:
                await self._stop.wait()
            finally:
                await server.stop(grace=None)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="otlp-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"OTLP receiver did not start: {failure}")
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
