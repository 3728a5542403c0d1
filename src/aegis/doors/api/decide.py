"""``POST /v1/decide`` and ``POST /v1/decide/batch``: ask the pipeline, answer its Decision.

This door answers a question, it does not enforce: every decided outcome,
deny and approval_needed included, is 200 with ``Decision.to_dict()`` and the
``x-aegis-*`` headers of :func:`aegis.pipeline.wire.decision_headers`; the
caller enforces it. A fail mode's answer (``decision.fail_closed`` /
``decision.fail_open``) is a decided outcome too. Only a request that never
became a call is an error: 4xx with the HTTP layer's error body, counted in
``aegis_requests_refused_total{door="api"}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aegis.core.call import parse_call
from aegis.doors.api.body import BodyError, read_json
from aegis.doors.api.encode import encode_body, encode_decision
from aegis.doors.api.limits import ApiLimits
from aegis.errors import CallError, ErrorCode
from aegis.http.server import error_response
from aegis.http.types import HttpRequest, HttpResponse
from aegis.pipeline import Pipeline, PipelineResult, RequestContext
from aegis.pipeline.wire import decision_headers

#: The ``door`` label of this door's metrics, spans and log lines.
DOOR = "api"

_JSON: tuple[str, str] = ("content-type", "application/json")

CountRefusal = Callable[[ErrorCode | str], None]


def no_count(code: ErrorCode | str) -> None:  # noqa: ARG001 - the no-op counter
    return None


class DecideHandlers:
    """The two decision endpoints over one pipeline."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        limits: ApiLimits | None = None,
        count_refusal: CountRefusal = no_count,
        door: str = DOOR,
    ) -> None:
        self.pipeline = pipeline
        self.limits = limits if limits is not None else ApiLimits()
        self.count_refusal = count_refusal
        self.door = door

    async def decide(self, request: HttpRequest) -> HttpResponse:
        try:
            data, token = read_json(request)
        except BodyError as exc:
            return self._refuse(exc.status, exc.code, exc.message)
        try:
            call = parse_call(data)
        except CallError as exc:
            return self._refuse(400, exc.code, exc.message, path=exc.path, error_type="CallError")
        ctx = RequestContext(self.door, token, request.remote_addr)
        decision = (await self.pipeline.decide(call, ctx)).decision
        return HttpResponse(200, (_JSON, *decision_headers(decision)), encode_decision(decision))

    async def decide_batch(self, request: HttpRequest) -> HttpResponse:
        try:
            data, token = read_json(request)
        except BodyError as exc:
            return self._refuse(exc.status, exc.code, exc.message)
        calls = self._batch_calls(data)
        if isinstance(calls, HttpResponse):
            return calls
        results: list[dict[str, Any]] = [{"index": i} for i in range(len(calls))]
        pending: list[int] = []
        parsed = []
        for i, item in enumerate(calls):
            try:
                parsed.append(parse_call(item))
            except CallError as exc:
                self.count_refusal(exc.code)
                results[i]["error"] = {"type": "CallError", **exc.to_dict()}
            else:
                pending.append(i)
        if parsed:
            ctx = RequestContext(self.door, token, request.remote_addr)
            # Concurrently: one slow stage costs the batch one pipeline timeout,
            # not one per call. gather keeps the order of its arguments.
            decided: list[PipelineResult] = await asyncio.gather(
                *(self.pipeline.decide(call, ctx) for call in parsed)
            )
            for i, result in zip(pending, decided, strict=True):
                results[i]["decision"] = result.decision.to_dict()
        return HttpResponse(200, (_JSON,), encode_body({"results": results}))

    def _batch_calls(self, data: object) -> list[object] | HttpResponse:
        if not isinstance(data, dict):
            return self._refuse(
                400, ErrorCode.REQUEST_MALFORMED, 'a batch is an object: {"calls": [...]}', path=""
            )
        unknown = sorted(str(key) for key in data if key != "calls")
        if unknown:
            return self._refuse(
                400, ErrorCode.REQUEST_MALFORMED, "unknown field in a batch", path=unknown[0][:64]
            )
        calls = data.get("calls")
        if not isinstance(calls, list):
            return self._refuse(
                400, ErrorCode.REQUEST_MALFORMED, "calls must be a list of calls", path="calls"
            )
        if len(calls) > self.limits.max_batch:
            return self._refuse(
                413,
                ErrorCode.REQUEST_TOO_LARGE,
                f"at most {self.limits.max_batch} calls in one batch",
                path="calls",
            )
        return calls

    def _refuse(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        path: str | None = None,
        error_type: str = "RequestError",
    ) -> HttpResponse:
        self.count_refusal(code)
        return error_response(status, code, message, path=path, error_type=error_type)
