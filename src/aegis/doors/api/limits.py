"""Limits of the decision API door, on top of the HTTP server's (HttpLimits)."""

from __future__ import annotations

from dataclasses import dataclass

#: Calls in one ``POST /v1/decide/batch`` request unless configured otherwise.
DEFAULT_MAX_BATCH = 100


@dataclass(frozen=True, slots=True)
class ApiLimits:
    #: Most calls in one batch request; more is 413 ``request.too_large``.
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
