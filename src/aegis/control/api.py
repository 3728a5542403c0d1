"""The control-plane HTTP API under ``/v1/control`` (see docs/control-plane.md).

Order of checks on every request, so that nothing of a tenant the caller does
not hold is ever consulted: authentication (401), the path (404/405), the
tenant in the path (403), the role (403), then the body (400) and the stores.
The 403 bodies never depend on whether a tenant or agent exists.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aegis.bundles.manager import PolicyManager, RolloutError
from aegis.control.openapi import control_openapi_document
from aegis.control.operators import Operator, OperatorStore
from aegis.control.roles import Permission, allows
from aegis.core.call import ToolCall
from aegis.errors import ErrorCode
from aegis.http.router import Route
from aegis.http.server import error_response
from aegis.http.types import HttpRequest, HttpResponse, json_response
from aegis.identity.killswitch import (
    GLOBAL_TENANT,
    ConfirmationRequiredError,
    KillSwitch,
    KillSwitchError,
    Mode,
    RevocationFinalError,
    RevocationKind,
    UnknownRevocationError,
)
from aegis.identity.registry import (
    AgentExistsError,
    AgentNotFoundError,
    AgentRecord,
    AgentRegistry,
    AgentStatus,
    InvalidAgentError,
)
from aegis.identity.token_errors import TokenError, TokenErrorReason
from aegis.identity.tokens import MAX_LIFETIME, TokenMinter
from aegis.identity.verifier import TokenVerifier

__all__ = ["PREFIX", "RecordHook", "build_control_routes"]

log = logging.getLogger(__name__)

PREFIX = "/v1/control"
#: ``record(kind, tenant, body)``: every mutation, after it took effect.
RecordHook = Callable[[str, str | None, dict[str, Any]], Awaitable[None]]

_SCOPED_KINDS = frozenset(
    {RevocationKind.JTI, RevocationKind.SESSION, RevocationKind.AGENT, RevocationKind.TOOL_SCOPE}
)
_MAX_LIST = 1000


class _Refused(Exception):  # noqa: N818 -- a response, not a failure
    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


def _fail(status: int, code: ErrorCode, message: str) -> _Refused:
    return _Refused(error_response(status, code, message))


def _forbidden(message: str) -> _Refused:
    return _fail(403, ErrorCode.CONTROL_FORBIDDEN, message)


def _invalid(message: str) -> _Refused:
    return _fail(400, ErrorCode.CONTROL_INVALID, message)


_NOT_HELD = "forbidden: this operator does not hold that tenant"


@dataclass(frozen=True, slots=True)
class _Ctx:
    request: HttpRequest
    operator: Operator
    tenant: str
    agent_id: str


_Endpoint = Callable[[_Ctx], Awaitable[HttpResponse]]


def _body(request: HttpRequest, tenant: str = "") -> dict[str, Any]:
    """The JSON object body. A ``tenant`` field in it must repeat the path's tenant:
    the path alone names the tenant, and a body naming another is refused (400)."""
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _invalid("the body must be a JSON object")
    if "tenant" in data and data["tenant"] != (tenant or None):
        raise _invalid("the body's 'tenant' does not match the tenant in the path")
    return data


def _str(body: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise _invalid(f"{name!r} must be a non-empty string")
    return value


def _opt_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(f"{name!r} must be a non-empty string when given")
    return value


def _strs(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(f"{name!r} must be a list of strings")
    return value


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise _invalid(f"{name!r} must be true or false")
    return value


class _ControlApi:
    def __init__(
        self,
        *,
        operators: OperatorStore,
        registry: AgentRegistry,
        kill_switch: KillSwitch,
        minter: TokenMinter | None,
        verifier: TokenVerifier | None,
        record: RecordHook | None,
        clock: Callable[[], float],
        policies: PolicyManager | None = None,
    ) -> None:
        self.operators = operators
        self.policies = policies
        self.registry = registry
        self.kill_switch = kill_switch
        self.minter = minter
        self.verifier = verifier
        self.record_hook = record
        self.clock = clock
        self.openapi = json.dumps(control_openapi_document(), separators=(",", ":")).encode()
        # (segments after the prefix with "{tenant}"/"{agent}" holes) -> {method: endpoint}
        t, a = "{tenant}", "{agent}"
        self.table: list[tuple[tuple[str, ...], dict[str, _Endpoint]]] = [
            (("whoami",), {"GET": self.whoami}),
            (("openapi.json",), {"GET": self.openapi_json}),
            (("revocations",), {"POST": self.revoke_global}),
            (("tenants", t, "agents"), {"GET": self.list_agents, "POST": self.register}),
            (("tenants", t, "agents", a), {"GET": self.get_agent}),
            (("tenants", t, "agents", a, "suspend"), {"POST": self.suspend}),
            (("tenants", t, "agents", a, "resume"), {"POST": self.resume}),
            (("tenants", t, "agents", a, "may_spawn"), {"PUT": self.set_may_spawn}),
            (("tenants", t, "agents", a, "tokens"), {"POST": self.mint}),
            (("tenants", t, "revocations"), {"GET": self.list_revocations, "POST": self.revoke}),
            (("tenants", t, "actions"), {"GET": self.list_actions}),
            (("tenants", t, "tokens", "inspect"), {"POST": self.inspect}),
            (("tenants", t, "tokens", "exchange"), {"POST": self.exchange}),
            # policy versions and rollout: the shared policy, then a tenant's own
            (("policy",), {"GET": self.policy_status}),
            (("policy", "promote"), {"POST": self.policy_promote}),
            (("policy", "rollback"), {"POST": self.policy_rollback}),
            (("tenants", t, "policy"), {"GET": self.policy_status}),
            (("tenants", t, "policy", "promote"), {"POST": self.policy_promote}),
            (("tenants", t, "policy", "rollback"), {"POST": self.policy_rollback}),
        ]

    # -- dispatch --------------------------------------------------------------------

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            return await self._dispatch(request)
        except _Refused as refused:
            return refused.response

    def _authenticate(self, request: HttpRequest) -> Operator:
        header = request.header("authorization") or ""
        scheme, _, secret = header.partition(" ")
        operator = None
        if scheme.lower() == "bearer":
            operator = self.operators.authenticate(secret.strip())
        if operator is None:
            raise _Refused(
                error_response(
                    401,
                    ErrorCode.CONTROL_UNAUTHENTICATED,
                    "a valid operator bearer token is required",
                    headers=(("www-authenticate", 'Bearer realm="aegis-control"'),),
                )
            )
        return operator

    async def _dispatch(self, request: HttpRequest) -> HttpResponse:
        operator = self._authenticate(request)
        rest = request.path[len(PREFIX) :]
        if not rest.startswith("/"):
            raise _fail(404, ErrorCode.REQUEST_NOT_FOUND, "no such path")
        segments = [unquote(s) for s in rest[1:].split("/")]
        if any(not s for s in segments):
            raise _fail(404, ErrorCode.REQUEST_NOT_FOUND, "no such path")
        for pattern, methods in self.table:
            if len(pattern) != len(segments):
                continue
            tenant = agent = ""
            for want, got in zip(pattern, segments, strict=True):
                if want == "{tenant}":
                    tenant = got
                elif want == "{agent}":
                    agent = got
                elif want != got:
                    break
            else:
                method = "GET" if request.method == "HEAD" else request.method
                endpoint = methods.get(method)
                if endpoint is None:
                    allow = ", ".join(sorted(methods))
                    raise _Refused(
                        error_response(
                            405,
                            ErrorCode.REQUEST_METHOD_NOT_ALLOWED,
                            f"{request.method[:32]} is not allowed here; allowed: {allow}",
                            headers=(("allow", allow),),
                        )
                    )
                if pattern[0] == "tenants" and not operator.holds(tenant):
                    raise _forbidden(_NOT_HELD)
                return await endpoint(_Ctx(request, operator, tenant, agent))
        raise _fail(404, ErrorCode.REQUEST_NOT_FOUND, "no such path")

    @staticmethod
    def _require(ctx: _Ctx, permission: Permission) -> None:
        if not allows(ctx.operator.role, permission):
            raise _forbidden(f"forbidden: role {ctx.operator.role} may not {permission}")

    async def _record(self, kind: str, ctx: _Ctx, body: dict[str, Any]) -> None:
        if self.record_hook is None:
            return
        actor = {"name": ctx.operator.name, "role": str(ctx.operator.role)}
        await self.record_hook(
            kind, ctx.tenant or None, {**body, "actor": actor, "at": self.clock()}
        )

    def _actor(self, ctx: _Ctx) -> str:
        return f"{ctx.operator.role}:{ctx.operator.name}"

    async def _agent(self, ctx: _Ctx) -> AgentRecord:
        record = await self.registry.get(ctx.tenant, ctx.agent_id)
        if record is None:
            raise _fail(404, ErrorCode.CONTROL_NOT_FOUND, "no such agent in this tenant")
        return record

    # -- endpoints -------------------------------------------------------------------

    async def policy_status(self, ctx: _Ctx) -> HttpResponse:
        return await _policy_status(self, ctx)

    async def policy_promote(self, ctx: _Ctx) -> HttpResponse:
        return await _policy_change(self, ctx, "promote")

    async def policy_rollback(self, ctx: _Ctx) -> HttpResponse:
        return await _policy_change(self, ctx, "rollback")

    async def whoami(self, ctx: _Ctx) -> HttpResponse:
        return json_response(200, ctx.operator.public())

    async def openapi_json(self, ctx: _Ctx) -> HttpResponse:  # noqa: ARG002
        return HttpResponse(200, (("content-type", "application/json"),), self.openapi)

    async def list_agents(self, ctx: _Ctx) -> HttpResponse:
        self._require(ctx, Permission.READ)
        agents = await self.registry.list(ctx.tenant)
        return json_response(200, {"agents": [a.to_dict() for a in agents[:_MAX_LIST]]})

    async def get_agent(self, ctx: _Ctx) -> HttpResponse:
        self._require(ctx, Permission.READ)
        return json_response(200, (await self._agent(ctx)).to_dict())

    async def register(self, ctx: _Ctx) -> HttpResponse:
        self._require(ctx, Permission.REGISTER)
        body = _body(ctx.request, ctx.tenant)
        record = AgentRecord(
            tenant=ctx.tenant,
            agent_id=_str(body, "agent_id"),
            owner=_str(body, "owner"),
            labels=frozenset(_strs(body, "labels")),
            scopes=tuple(_strs(body, "scopes")),
            may_spawn=frozenset(_strs(body, "may_spawn")),
        )
        try:
            stored = await self.registry.register(record)
        except AgentExistsError:
            raise _fail(409, ErrorCode.CONTROL_CONFLICT, "the agent exists already") from None
        except InvalidAgentError as exc:
            raise _invalid(str(exc)) from None
        await self._record("agent", ctx, {"action": "register", "agent": stored.to_dict()})
        return json_response(201, stored.to_dict())

    async def set_may_spawn(self, ctx: _Ctx) -> HttpResponse:
        self._require(ctx, Permission.REGISTER)
        body = _body(ctx.request, ctx.tenant)
        if "may_spawn" not in body:
            raise _invalid("'may_spawn' is required")
        may_spawn = _strs(body, "may_spawn")
        await self._agent(ctx)
        try:
            stored = await self.registry.set_may_spawn(ctx.tenant, ctx.agent_id, may_spawn)
        except AgentNotFoundError:
            raise _fail(404, ErrorCode.CONTROL_NOT_FOUND, "no such agent in this tenant") from None
        except InvalidAgentError as exc:
            raise _invalid(str(exc)) from None
        await self._record("agent", ctx, {"action": "set_may_spawn", "agent": stored.to_dict()})
        return json_response(200, stored.to_dict())

    async def suspend(self, ctx: _Ctx) -> HttpResponse:
        self._require(ctx, Permission.SUSPEND)
        body = _body(ctx.request, ctx.tenant)
        reason = _str(body, "reason")
        cascade = _bool(body, "cascade", True)
        await self._agent(ctx)
        try:
            rev = await self.kill_switch.suspend(
                RevocationKind.AGENT,
                tenant=ctx.tenant,
                target=ctx.agent_id,
                actor=self._actor(ctx),
                reason=reason,
                cascade=cascade,
            )
        except KillSwitchError as exc:
            raise _invalid(str(exc)) from None
        await self._record("revocation", ctx, {"action": "suspend", "revocation": rev.to_dict()})
        return json_response(200, {"revocation": rev.to_dict()})

    async def resume(self, ctx: _Ctx) -> HttpResponse:
        self._require(ctx, Permission.SUSPEND)
        reason = _str(_body(ctx.request, ctx.tenant), "reason")
        await self._agent(ctx)
        held = [
            r
            for r in self.kill_switch.active(ctx.tenant)
            if r.kind is RevocationKind.AGENT and r.target == ctx.agent_id
        ]
        if not held:
            raise _fail(404, ErrorCode.CONTROL_NOT_FOUND, "the agent is not suspended")
        if any(r.mode is Mode.REVOKED for r in held):
            raise _fail(409, ErrorCode.CONTROL_CONFLICT, "the agent is revoked; that is final")
        resumed = []
        for rev in held:
            try:
                action = await self.kill_switch.resume(
                    rev.id, actor=self._actor(ctx), reason=reason
                )
            except (UnknownRevocationError, RevocationFinalError):
                continue  # lifted or replaced meanwhile
            except KillSwitchError as exc:
                raise _invalid(str(exc)) from None
            resumed.append(action.revocation.to_dict())
            await self._record(
                "revocation", ctx, {"action": "resume", "revocation": action.revocation.to_dict()}
            )
        return json_response(200, {"resumed": resumed})

    async def mint(self, ctx: _Ctx) -> HttpResponse:
        self._require(ctx, Permission.MINT)
        if self.minter is None:
            raise _fail(
                404, ErrorCode.CONTROL_NOT_FOUND, "token minting is not configured on this gateway"
            )
        body = _body(ctx.request, ctx.tenant)
        scopes = _strs(body, "scopes")
        session_id = _opt_str(body, "session_id")
        parent_chain = _strs(body, "parent_chain")
        lifetime = body.get("lifetime_seconds")
        max_seconds = int(MAX_LIFETIME.total_seconds())
        if lifetime is not None and (
            isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0
        ):
            raise _invalid("'lifetime_seconds' must be a positive integer")
        agent = await self._agent(ctx)
        if agent.status is not AgentStatus.ACTIVE:
            raise _fail(409, ErrorCode.CONTROL_CONFLICT, f"the agent is {agent.status}")
        outside = [s for s in scopes if s not in agent.scopes]
        if outside:
            raise _invalid(f"scopes not registered for the agent: {outside}")
        for parent in parent_chain:
            if await self.registry.get(ctx.tenant, parent) is None:
                raise _invalid(f"parent_chain names an unknown agent: {parent!r}")
        try:
            if lifetime is None:
                token, claims = self.minter.mint(
                    ctx.agent_id, ctx.tenant, scopes, session_id, parent_chain
                )
            else:
                now = self.minter._now()
                default = self.minter._lifetime
                token, claims = self.minter._sign(
                    agent_id=ctx.agent_id,
                    tenant=ctx.tenant,
                    scopes=tuple(dict.fromkeys(scopes)),
                    session_id=session_id,
                    parent_chain=tuple(parent_chain),
                    now=now,
                    exp=now + min(lifetime, default, max_seconds),
                )
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        await self._record(
            "token",
            ctx,
            {
                "action": "mint",
                "agent_id": claims.sub,
                "jti": claims.jti,
                "scopes": list(claims.scopes),
                "sid": claims.sid,
                "parent_chain": list(claims.parent_chain),
                "exp": claims.exp,
            },
        )
        return json_response(201, {"token": token, "claims": claims.to_payload()})

    async def exchange(self, ctx: _Ctx) -> HttpResponse:
        """Delegation (RFC 8693-style): the parent agent's token -> a child's token."""
        self._require(ctx, Permission.MINT)
        if self.minter is None or self.verifier is None:
            raise _fail(404, ErrorCode.CONTROL_NOT_FOUND, "token delegation is not configured here")
        body = _body(ctx.request, ctx.tenant)
        token = _str(body, "token")
        child_id = _str(body, "child_agent_id")
        scopes = _strs(body, "scopes")
        try:
            parent = self.verifier.verify(token)
        except TokenError as exc:
            raise _fail(
                400, ErrorCode.CONTROL_INVALID, f"the parent token is not valid: {exc.reason}"
            ) from None
        if parent.tenant != ctx.tenant:
            raise _forbidden("forbidden: the parent token belongs to another tenant")
        parent_record = await self.registry.get(ctx.tenant, parent.sub)
        child = await self.registry.get(ctx.tenant, child_id)
        if parent_record is None or child is None:
            raise _fail(404, ErrorCode.CONTROL_NOT_FOUND, "no such agent in this tenant")
        for record in (parent_record, child):
            if record.status is not AgentStatus.ACTIVE:
                raise _fail(
                    409, ErrorCode.CONTROL_CONFLICT, f"agent {record.agent_id!r} is {record.status}"
                )
        as_call = ToolCall(
            tenant=parent.tenant,
            agent_id=parent.sub,
            tool="aegis.control.exchange",
            parent_chain=parent.parent_chain,
            session_id=parent.sid or "",
        )
        if self.kill_switch.match(as_call, jti=parent.jti) is not None:
            raise _fail(409, ErrorCode.CONTROL_CONFLICT, "the parent token is revoked")
        outside = [s for s in scopes if s not in child.scopes]
        if outside:
            raise _invalid(f"scopes not registered for the child: {outside}")
        try:
            child_token, claims = self.minter.exchange(
                parent,
                child_id,
                scopes,
                may_spawn=lambda _t, _p, c: c in parent_record.may_spawn,
            )
        except TokenError as exc:
            status = 403 if exc.reason is TokenErrorReason.SPAWN_REFUSED else 400
            code = ErrorCode.CONTROL_FORBIDDEN if status == 403 else ErrorCode.CONTROL_INVALID
            raise _fail(status, code, f"{exc.reason}: {exc}") from None
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        await self._record(
            "token",
            ctx,
            {
                "action": "exchange",
                "agent_id": claims.sub,
                "jti": claims.jti,
                "parent_jti": parent.jti,
                "scopes": list(claims.scopes),
                "sid": claims.sid,
                "parent_chain": list(claims.parent_chain),
                "exp": claims.exp,
            },
        )
        return json_response(201, {"token": child_token, "claims": claims.to_payload()})

    async def revoke(self, ctx: _Ctx) -> HttpResponse:
        self._require(ctx, Permission.REVOKE_SCOPED)
        body = _body(ctx.request, ctx.tenant)
        try:
            kind = RevocationKind(str(body.get("kind")))
        except ValueError:
            raise _invalid(
                "'kind' must be one of jti, session, agent, tool_scope, tenant"
            ) from None
        if kind is RevocationKind.GLOBAL:
            raise _invalid("a global revocation goes to POST /v1/control/revocations")
        cascade = _bool(body, "cascade", True)
        confirm = _bool(body, "confirm", False)
        reason = body.get("reason")
        if kind is RevocationKind.TENANT:
            self._require(ctx, Permission.REVOKE_TENANT)
            if not confirm or not isinstance(reason, str) or not reason.strip():
                raise _fail(
                    428,
                    ErrorCode.CONTROL_CONFIRMATION_REQUIRED,
                    "revoking a whole tenant needs confirm: true and a reason",
                )
            target = ""
        else:
            target = _str(body, "target")
        if not isinstance(reason, str) or not reason.strip():
            raise _invalid("'reason' must be a non-empty string")
        try:
            rev = await self.kill_switch.revoke(
                kind,
                tenant=ctx.tenant,
                target=target,
                actor=self._actor(ctx),
                reason=reason,
                cascade=cascade,
                confirm=confirm,
            )
        except ConfirmationRequiredError as exc:
            raise _fail(428, ErrorCode.CONTROL_CONFIRMATION_REQUIRED, str(exc)) from None
        except KillSwitchError as exc:
            raise _invalid(str(exc)) from None
        await self._record("revocation", ctx, {"action": "revoke", "revocation": rev.to_dict()})
        return json_response(201, {"revocation": rev.to_dict()})

    async def revoke_global(self, ctx: _Ctx) -> HttpResponse:
        if not ctx.operator.is_global or not allows(ctx.operator.role, Permission.REVOKE_GLOBAL):
            raise _forbidden("forbidden: a global revocation needs a soc_analyst or "
                             "platform_engineer holding every tenant ('*')")  # fmt: skip
        body = _body(ctx.request, ctx.tenant)
        if body.get("kind", "global") != "global":
            raise _invalid("'kind' must be 'global' here")
        reason = body.get("reason")
        if body.get("confirm") is not True or not isinstance(reason, str) or not reason.strip():
            raise _fail(
                428,
                ErrorCode.CONTROL_CONFIRMATION_REQUIRED,
                "a global revocation needs confirm: true and a reason",
            )
        try:
            rev = await self.kill_switch.revoke(
                RevocationKind.GLOBAL,
                tenant=GLOBAL_TENANT,
                actor=self._actor(ctx),
                reason=reason,
                confirm=True,
            )
        except KillSwitchError as exc:
            raise _invalid(str(exc)) from None
        await self._record("revocation", ctx, {"action": "revoke", "revocation": rev.to_dict()})
        return json_response(201, {"revocation": rev.to_dict()})

    async def list_revocations(self, ctx: _Ctx) -> HttpResponse:
        self._require(ctx, Permission.READ)
        revs = sorted(self.kill_switch.active(ctx.tenant), key=lambda r: (r.at, r.id))
        return json_response(200, {"revocations": [r.to_dict() for r in revs]})

    async def list_actions(self, ctx: _Ctx) -> HttpResponse:
        self._require(ctx, Permission.READ)
        actions = await self.kill_switch.actions(ctx.tenant)
        return json_response(200, {"actions": [a.to_dict() for a in actions[-_MAX_LIST:]]})

    async def inspect(self, ctx: _Ctx) -> HttpResponse:
        self._require(ctx, Permission.INSPECT)
        if self.verifier is None:
            raise _fail(
                404, ErrorCode.CONTROL_NOT_FOUND, "token verification is not configured here"
            )
        token = _str(_body(ctx.request, ctx.tenant), "token")
        try:
            claims = self.verifier.verify(token)
        except TokenError as exc:
            return json_response(200, {"valid": False, "reason": str(exc.reason)})
        if claims.tenant != ctx.tenant:
            return json_response(200, {"valid": False, "reason": "other tenant"})
        return json_response(200, {"valid": True, "claims": claims.to_payload()})


# -- policy versions and rollout ---------------------------------------------------------

_ROLLOUT_STATUS = {
    ErrorCode.ROLLOUT_UNKNOWN_TENANT: 404,
    ErrorCode.ROLLOUT_UNKNOWN_VERSION: 404,
    ErrorCode.ROLLOUT_INVALID: 409,
}


def _policy_manager(api: _ControlApi) -> PolicyManager:
    if api.policies is None:
        raise _fail(404, ErrorCode.CONTROL_NOT_FOUND, "this gateway does not serve bundles")
    return api.policies


def _rollout_scope(ctx: _Ctx) -> str:
    """The slot a rollout request acts on; the shared policy decides every tenant's
    calls, so only an operator holding every tenant may change it."""
    if ctx.tenant:
        return ctx.tenant
    if not ctx.operator.is_global:
        raise _forbidden("forbidden: the shared policy needs an operator holding all tenants")
    return ""


async def _policy_status(api: _ControlApi, ctx: _Ctx) -> HttpResponse:
    api._require(ctx, Permission.READ)
    manager = _policy_manager(api)
    if ctx.tenant:
        slots = manager.status([ctx.tenant])
        if not slots:
            raise _fail(
                404, ErrorCode.ROLLOUT_UNKNOWN_TENANT, "no bundle of its own is served for it"
            )
    else:  # the shared policy and the tenants this operator holds
        slots = [s for s in manager.status() if not s["tenant"] or ctx.operator.holds(s["tenant"])]
    return json_response(200, {"slots": slots})


async def _policy_change(api: _ControlApi, ctx: _Ctx, action: str) -> HttpResponse:
    api._require(ctx, Permission.ROLLOUT)
    tenant = _rollout_scope(ctx)  # refusals first: they never depend on configuration
    manager = _policy_manager(api)
    body = _body(ctx.request, ctx.tenant)
    reason = _str(body, "reason")
    actor = api._actor(ctx)
    try:
        if action == "promote":
            percent = body.get("percent")
            if percent is not None and (
                isinstance(percent, bool) or not isinstance(percent, (int, float))
            ):
                raise _invalid("'percent' must be a number")
            status = await manager.promote(
                tenant,
                _str(body, "stage"),
                version=_opt_str(body, "version"),
                percent=None if percent is None else float(percent),
                by=_opt_str(body, "by") or "agent",
                actor=actor,
            )
        else:
            status = await manager.rollback(tenant, to=_opt_str(body, "to"), actor=actor)
    except RolloutError as exc:
        raise _fail(_ROLLOUT_STATUS[exc.code], exc.code, exc.message) from None
    request = {k: body[k] for k in ("stage", "version", "percent", "by", "to") if k in body}
    await api._record(
        "rollout",
        ctx,
        {
            "action": action,
            "request": request,
            "reason": reason,
            "active": status["active"],
            "candidate": status["candidate"],
            "pinned": status["pinned"],
        },
    )
    return json_response(200, status)


def build_control_routes(
    *,
    operators: OperatorStore,
    registry: AgentRegistry,
    kill_switch: KillSwitch,
    minter: TokenMinter | None = None,
    verifier: TokenVerifier | None = None,
    record: RecordHook | None = None,
    clock: Callable[[], float] = time.time,
    policies: PolicyManager | None = None,
) -> list[Route]:
    """The control plane's routes: one prefix route over ``/v1/control``."""
    api = _ControlApi(
        operators=operators,
        registry=registry,
        kill_switch=kill_switch,
        minter=minter,
        verifier=verifier,
        record=record,
        clock=clock,
        policies=policies,
    )
    return [Route(PREFIX, api, frozenset({"GET", "POST", "PUT"}), prefix=True)]
