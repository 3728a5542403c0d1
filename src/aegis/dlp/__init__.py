"""Data loss prevention for the sanitize outcome: detectors and the redactor.

A sanitize obligation names fields to redact whole and detectors to run over
the call's params; :class:`Redactor` applies both and returns a rewritten copy
plus :class:`~aegis.core.decision.Redaction` records that never hold a secret.
Every pattern is RE2 (linear time), compiled lazily on first use.
"""

from aegis.dlp.builtin import builtin_detectors
from aegis.dlp.detector import Detector, DetectorNameError
from aegis.dlp.names import BUILTIN_DETECTOR_NAMES
from aegis.dlp.redactor import FIELD_DETECTOR, FIELD_MARKER, Redactor, combine, marker

__all__ = [
    "BUILTIN_DETECTOR_NAMES",
    "FIELD_DETECTOR",
    "FIELD_MARKER",
    "Detector",
    "DetectorNameError",
    "Redactor",
    "builtin_detectors",
    "combine",
    "marker",
]
