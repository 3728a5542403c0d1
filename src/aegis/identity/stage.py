"""``TokenIdentity``: the pipeline's identity stage when agent tokens are configured.

Every door puts the agent's raw token in ``RequestContext.credentials`` (API and
MCP: ``Authorization: Bearer``; proxy: the ``Proxy-Authorization`` password). This
stage binds the call to the identity the token proves:

1. no token → ``identity.missing``; any :class:`TokenError` from the verifier →
   ``identity.invalid`` (the reason names the token error's ``reason``).
2. the call's stated ``tenant`` / ``agent_id`` must be the token's (``tenant``,
   ``sub``), else ``identity.mismatch``.
3. a call that states a ``parent_chain`` must state the token's delegation chain
   (``act``), else ``decision.chain_mismatch`` (with ``require_chain_match``).
4. the call is returned with ``tenant``, ``agent_id``, ``parent_chain`` and
   ``session_id`` taken from the token (``session_id`` is the ``sid`` claim, or
   empty: a caller cannot pick the session it is checked under).
5. with a kill switch, the bound call and the token's ``jti`` are checked on every
   call, cache hit or not: jti, session, agent (and its chain), tool scope, tenant,
   global → ``decision.revoked``.

Design: the kill switch is consulted here rather than in the pipeline's kill
switch stage, because only this stage holds the token's ``jti`` (``ToolCall``
does not carry it). The pipeline's ``kill_switch`` stays ``NoKillSwitch``, so a
call is matched against the revocations exactly once.

Nothing here waits on I/O: the verifier is synchronous (a cache hit is a dict
lookup) and ``KillSwitch.check`` reads an in-memory snapshot, so a call never
suspends in this stage.
"""

from __future__ import annotations

import dataclasses

from aegis.core.call import ToolCall
from aegis.errors import ErrorCode
from aegis.identity.killswitch import KillSwitch
from aegis.identity.token_errors import TokenError, TokenErrorReason
from aegis.identity.verifier import TokenVerifier
from aegis.pipeline.stages import Refusal, RequestContext

__all__ = ["TokenIdentity"]

_MISSING = Refusal(ErrorCode.IDENTITY_MISSING, "no agent token: send the agent's token")


class TokenIdentity:
    """The ``IdentityStage`` backed by a :class:`TokenVerifier` (and a kill switch)."""

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        kill_switch: KillSwitch | None = None,
        require_chain_match: bool = True,
    ) -> None:
        self.verifier = verifier
        self.kill_switch = kill_switch
        self.require_chain_match = require_chain_match

    async def authenticate(self, call: ToolCall, ctx: RequestContext) -> ToolCall | Refusal:
        token = ctx.credentials
        if not token:
            return _MISSING
        try:
            claims = self.verifier.verify(token)
        except TokenError as exc:
            # Expired gets its own code: the agent needs a fresh token, not help.
            code = (
                ErrorCode.IDENTITY_EXPIRED
                if exc.reason is TokenErrorReason.EXPIRED
                else ErrorCode.IDENTITY_INVALID
            )
            return Refusal(code, f"token refused ({exc.reason}): {exc.message}")
        if call.tenant != claims.tenant:
            return Refusal(
                ErrorCode.IDENTITY_MISMATCH,
                "the token belongs to another tenant (wrong_tenant)",
            )
        if call.agent_id != claims.sub:
            return Refusal(
                ErrorCode.IDENTITY_MISMATCH,
                "the token belongs to another agent (wrong_agent)",
            )
        if (
            self.require_chain_match
            and call.parent_chain
            and call.parent_chain != claims.parent_chain
        ):
            return Refusal(
                ErrorCode.DECISION_CHAIN_MISMATCH,
                "the call's parent_chain is not the token's delegation chain",
            )
        bound = dataclasses.replace(
            call,
            tenant=claims.tenant,
            agent_id=claims.sub,
            parent_chain=claims.parent_chain,
            session_id=claims.sid or "",
        )
        if self.kill_switch is not None:
            refusal = await self.kill_switch.check(bound, jti=claims.jti)
            if refusal is not None:
                return refusal
        return bound
