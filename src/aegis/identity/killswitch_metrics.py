"""The kill switch's Prometheus metric: time to revoke (a KPI, DESIGN.md C10).

``aegis_time_to_revoke_seconds`` is observed in every process that applies a
revoke or suspend: from the action's timestamp (the command, at the replica that
received it) to the moment it is in force in this process's snapshot. Label
``source``: ``local`` in the process that took the command (about zero),
``remote`` in every other replica (the propagation time). Across machines the
figure includes their clock offset; negative values are recorded as zero.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

TIME_TO_REVOKE_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class KillSwitchMetrics:
    """Build once per registry (the server's ``GatewayMetrics.registry``) and share it
    among the kill switches of the process; pass ``observe`` to ``KillSwitch``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.time_to_revoke = Histogram(
            "aegis_time_to_revoke_seconds",
            "Time from a revoke/suspend command to its being in force in this process.",
            ["source"],
            buckets=TIME_TO_REVOKE_BUCKETS,
            registry=registry,
        )
        self._local = self.time_to_revoke.labels("local")
        self._remote = self.time_to_revoke.labels("remote")

    def observe(self, seconds: float, local: bool) -> None:
        (self._local if local else self._remote).observe(max(0.0, seconds))
