"""Operator roles and what each may do (issue 5 item 6)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ROLE_PERMISSIONS", "Permission", "Role", "allows"]


class Role(StrEnum):
    SOC_ANALYST = "soc_analyst"
    POLICY_OWNER = "policy_owner"
    PLATFORM_ENGINEER = "platform_engineer"
    AUDITOR = "auditor"


class Permission(StrEnum):
    READ = "read"  # agents, revocations, actions of the operator's tenants
    SUSPEND = "suspend"  # suspend / resume agents
    REVOKE_SCOPED = "revoke_scoped"  # jti, session, agent, tool_scope
    REVOKE_TENANT = "revoke_tenant"  # with confirm + reason
    REVOKE_GLOBAL = "revoke_global"  # with confirm + reason, tenants ["*"] only
    INSPECT = "inspect"  # token inspection
    REGISTER = "register"  # register agents, update may_spawn
    MINT = "mint"  # mint agent tokens
    ROLLOUT = "rollout"  # promote / roll back policy versions


_SOC = frozenset(
    {
        Permission.READ,
        Permission.SUSPEND,
        Permission.REVOKE_SCOPED,
        Permission.REVOKE_TENANT,
        Permission.REVOKE_GLOBAL,
        Permission.INSPECT,
    }
)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.AUDITOR: frozenset({Permission.READ}),
    # Seeds: "policy owner (evaluate and change policy), platform engineer (apply
    # rollout & rollback)" -- both may move versions; analysts contain, not deploy.
    Role.POLICY_OWNER: frozenset({Permission.READ, Permission.ROLLOUT}),
    Role.SOC_ANALYST: _SOC,
    Role.PLATFORM_ENGINEER: _SOC | {Permission.REGISTER, Permission.MINT, Permission.ROLLOUT},
}


def allows(role: Role, permission: Permission) -> bool:
    """Whether ``role`` grants ``permission`` (tenant scope is checked separately)."""
    return permission in ROLE_PERMISSIONS[role]
