"""The control plane: an authenticated, tenant-scoped HTTP API for operators."""

from aegis.control.api import RecordHook, build_control_routes
from aegis.control.operators import Operator, OperatorStore, hash_secret
from aegis.control.roles import Permission, Role, allows

__all__ = [
    "Operator",
    "OperatorStore",
    "Permission",
    "RecordHook",
    "Role",
    "allows",
    "build_control_routes",
    "hash_secret",
]
