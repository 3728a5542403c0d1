"""Evidence every decision leaves: an OpenTelemetry span, Prometheus metrics, a JSON log line.

Only the OpenTelemetry *API* is used here; which SDK and exporter receive the
spans is decided where the server is assembled (DESIGN.md §2).
"""

from aegis.telemetry.evidence import TelemetryEvidence
from aegis.telemetry.log import JsonLog
from aegis.telemetry.metrics import GatewayMetrics

__all__ = ["GatewayMetrics", "JsonLog", "TelemetryEvidence"]
