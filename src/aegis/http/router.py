"""Routing by path and method: exact paths first, then the longest prefix.

A path matched with no handler for the method is 405 with ``Allow`` (RFC 9110
§15.5.6); an unmatched path is 404. ``HEAD`` is answered by the ``GET``
handler when no ``HEAD`` handler is given (RFC 9110 §9.3.2; the server drops
the body). Paths are compared as received, without percent-decoding or
normalisation: ``/v1/decide/`` and ``/v1/%64ecide`` are not ``/v1/decide``,
so no spelling reaches a handler that its route did not name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aegis.errors import ErrorCode
from aegis.http.server import error_response
from aegis.http.types import Handler, HttpRequest, HttpResponse

__all__ = ["Route", "Router"]


@dataclass(frozen=True, slots=True)
class Route:
    """``handler`` answers ``methods`` on ``path``; with ``prefix=True`` also on every
    path below it (``/files`` matches ``/files`` and ``/files/a``, not ``/filesystem``)."""

    path: str
    handler: Handler
    methods: frozenset[str] = frozenset({"GET"})
    prefix: bool = False

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"a route path starts with '/': {self.path!r}")
        if not self.methods:
            raise ValueError(f"route {self.path} has no methods")
        for method in self.methods:
            if not method.isascii() or not method.isupper():
                raise ValueError(f"methods are upper-case tokens: {method!r}")


class _Methods:
    """The handlers of one path, and its ``Allow`` value."""

    __slots__ = ("allow", "by_method", "explicit")

    def __init__(self) -> None:
        self.explicit: dict[str, Handler] = {}
        self.by_method: dict[str, Handler] = {}
        self.allow = ""

    def add(self, route: Route) -> None:
        for method in route.methods:
            if method in self.explicit:
                raise ValueError(f"{method} {route.path} is routed twice")
            self.explicit[method] = route.handler
        self.by_method = dict(self.explicit)
        if "GET" in self.explicit:
            self.by_method.setdefault("HEAD", self.explicit["GET"])
        self.allow = ", ".join(sorted(self.by_method))


class Router:
    """A :data:`~aegis.http.types.Handler` that dispatches to routes.

    ``on_refusal`` is called with the code of each 404/405, so a door can count
    them with its other refusals.
    """

    def __init__(
        self,
        routes: Iterable[Route] = (),
        *,
        on_refusal: Callable[[ErrorCode], None] | None = None,
    ) -> None:
        self._exact: dict[str, _Methods] = {}
        self._prefixes: list[tuple[str, _Methods]] = []
        self._routes: list[Route] = []
        self.on_refusal = on_refusal
        for route in routes:
            self.add(route)

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def add(self, route: Route) -> None:
        if route.prefix:
            key = route.path.rstrip("/") or "/"
            for existing, methods in self._prefixes:
                if existing == key:
                    methods.add(route)
                    break
            else:
                methods = _Methods()
                methods.add(route)
                self._prefixes.append((key, methods))
                # Longest prefix first: the most specific route wins.
                self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        else:
            self._exact.setdefault(route.path, _Methods()).add(route)
        self._routes.append(route)

    def resolve(self, method: str, path: str) -> Handler | HttpResponse:
        """The handler for ``method`` on ``path``, or the 404/405 response."""
        methods = self._exact.get(path)
        if methods is None:
            methods = self._match_prefix(path)
            if methods is None:
                return self._refuse(
                    error_response(404, ErrorCode.REQUEST_NOT_FOUND, "no such path"),
                    ErrorCode.REQUEST_NOT_FOUND,
                )
        handler = methods.by_method.get(method)
        if handler is None:
            return self._refuse(
                error_response(
                    405,
                    ErrorCode.REQUEST_METHOD_NOT_ALLOWED,
                    f"{method[:32]} is not allowed here; allowed: {methods.allow}",
                    headers=(("allow", methods.allow),),
                ),
                ErrorCode.REQUEST_METHOD_NOT_ALLOWED,
            )
        return handler

    def _match_prefix(self, path: str) -> _Methods | None:
        for prefix, methods in self._prefixes:
            if prefix in ("/", path) or path.startswith(prefix + "/"):
                return methods
        return None

    def _refuse(self, response: HttpResponse, code: ErrorCode) -> HttpResponse:
        if self.on_refusal is not None:
            self.on_refusal(code)
        return response

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        target = self.resolve(request.method, request.path)
        if isinstance(target, HttpResponse):
            return target
        return await target(request)
