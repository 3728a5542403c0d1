"""Structured JSON log lines, one object per line, for a SIEM to ingest.

A small writer rather than stdlib ``logging``: one decision is one line on the
hot path, and ``logging``'s handler and formatter chain costs several times
the decision itself. Lines carry trace_id and span_id so logs, spans and audit
records join (W3C Trace Context ids, lower-case hex).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class JsonLog:
    def __init__(self, stream: IO[str] | None = None, *, level: str = "info") -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._level = LEVELS[level]
        self._lock = threading.Lock()
        self.lines_written = 0

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self._level

    def emit(self, level: str, event: str, **fields: Any) -> None:
        if LEVELS[level] < self._level:
            return
        record = {"ts": _rfc3339(time.time()), "level": level, "event": event, **fields}
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with self._lock:  # grpc handlers run on threads; keep lines whole
            self._stream.write(line)
            self.lines_written += 1

    def info(self, event: str, **fields: Any) -> None:
        self.emit("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.emit("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.emit("error", event, **fields)

    def flush(self) -> None:
        with self._lock:
            self._stream.flush()


def _rfc3339(epoch: float) -> str:
    seconds = int(epoch)
    micros = int((epoch - seconds) * 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"
