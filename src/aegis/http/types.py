"""Request and response values every HTTP handler speaks, whatever server runs it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A fully read request. Header names are lower-case; order and repeats are kept."""

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    remote_addr: str | None = None

    def header(self, name: str) -> str | None:
        """The first value of a header (names are matched lower-case)."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def json_response(
    status: int, body: Any, headers: tuple[tuple[str, str], ...] | list[tuple[str, str]] = ()
) -> HttpResponse:
    payload = json.dumps(body, separators=(",", ":"), default=str).encode()
    return HttpResponse(status, (("content-type", "application/json"), *headers), payload)
