"""One Envoy mode's way through the pipeline: map the request, decide, answer.

Every mode (ext_authz gRPC, ext_authz HTTP, ext_proc) owns one gate, named by
its door label. Decisions -- including "could not decide", which the pipeline's
fail mode has already turned into an answer -- are recorded by the pipeline's
evidence stage (span, ``aegis_pipeline_errors_total``, ``aegis_fail_open_total``,
the ``decision.could_not_decide`` log line). What the pipeline never sees is
counted and logged here: requests refused before a call existed, sanitize
decisions the mode could not carry out, and protocol errors.
"""

from __future__ import annotations

from aegis.doors.envoy.answer import Answer, AuthzSanitize, answer_decision, answer_refusal
from aegis.doors.envoy.mapping import MappingConfig, MappingRefusal, RequestMapper
from aegis.doors.envoy.request import EnvoyRequest
from aegis.errors import ErrorCode
from aegis.pipeline import Pipeline, RequestContext
from aegis.telemetry import GatewayMetrics, JsonLog

DOOR_AUTHZ_GRPC = "ext_authz_grpc"
DOOR_AUTHZ_HTTP = "ext_authz_http"
DOOR_EXT_PROC = "ext_proc"


class EnvoyGate:
    def __init__(
        self,
        pipeline: Pipeline,
        mapping: MappingConfig | RequestMapper,
        *,
        door: str,
        can_rewrite: bool,
        authz_sanitize: AuthzSanitize = AuthzSanitize.DENY_IF_REWRITE,
        metrics: GatewayMetrics | None = None,
        log: JsonLog | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.mapper = mapping if isinstance(mapping, RequestMapper) else RequestMapper(mapping)
        self.door = door
        self.can_rewrite = can_rewrite
        self.authz_sanitize = authz_sanitize
        self.metrics = metrics
        self.log = log

    async def check(self, request: EnvoyRequest) -> Answer:
        mapped = self.mapper.map(request)
        if isinstance(mapped, MappingRefusal):
            return self.refuse(mapped, request)
        ctx = RequestContext(
            door=self.door,
            credentials=mapped.credentials,
            remote_addr=mapped.remote_addr,
            request_id=mapped.request_id,
        )
        result = await self.pipeline.decide(mapped.call, ctx)
        answer = answer_decision(
            result, mapped, can_rewrite=self.can_rewrite, authz_sanitize=self.authz_sanitize
        )
        if result.decision.permits and not answer.permits:
            # The pipeline recorded "sanitize"; the door refused to carry it out.
            self._count(answer.code)
            self._log(
                "envoy.sanitize_refused",
                code=str(answer.code),
                reason=answer.reason,
                decision_id=answer.decision_id,
                tool=mapped.call.tool,
                request_id=mapped.request_id,
            )
        return answer

    def refuse(self, refusal: MappingRefusal, request: EnvoyRequest | None = None) -> Answer:
        """Answer a request that never became a call; counted and logged."""
        answer = answer_refusal(refusal, self.pipeline.policy.current, self.pipeline.clock())
        self._count(refusal.code)
        self._log(
            "request.refused",
            code=str(refusal.code),
            reason=refusal.reason,
            decision_id=answer.decision_id,
            remote_addr=request.source_address if request else None,
            request_id=request.request_id if request else None,
        )
        return answer

    def protocol_error(self, reason: str) -> None:
        """An Envoy peer broke the protocol; the caller ends the RPC with an error."""
        self._count(ErrorCode.REQUEST_MALFORMED)
        self._log("envoy.protocol_error", code=str(ErrorCode.REQUEST_MALFORMED), reason=reason)

    def internal_error(self, reason: str) -> None:
        """A bug in the door: the caller answers with an error Envoy fails closed on."""
        self._count(ErrorCode.PIPELINE_INTERNAL_ERROR)
        if self.log is not None:
            self.log.error("envoy.internal_error", door=self.door, reason=reason)

    def _count(self, code: ErrorCode) -> None:
        if self.metrics is not None:
            self.metrics.requests_refused.labels(self.door, str(code)).inc()

    def _log(self, event: str, **fields: object) -> None:
        if self.log is not None:
            self.log.warning(event, door=self.door, **fields)
