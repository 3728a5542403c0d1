"""Routing: exact paths, longest prefix on segment boundaries, HEAD, 404/405."""

from __future__ import annotations

import asyncio

import pytest

from aegis.errors import ErrorCode
from aegis.http.router import Route, Router
from aegis.http.types import Handler, HttpRequest, HttpResponse


def named(name: str) -> Handler:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, (("x-handler", name),), request.path.encode())

    return handler


def answer(router: Router, method: str, path: str) -> HttpResponse:
    return asyncio.run(router(HttpRequest(method, path)))


def handled_by(router: Router, method: str, path: str) -> str | int:
    resp = answer(router, method, path)
    return dict(resp.headers).get("x-handler", resp.status)


ROUTER = Router(
    [
        Route("/v1/decide", named("decide"), frozenset({"POST"})),
        Route("/v1/decide/batch", named("batch"), frozenset({"POST"})),
        Route("/files", named("files"), frozenset({"GET"}), prefix=True),
        Route("/files/special", named("special"), frozenset({"GET", "PUT"}), prefix=True),
        Route("/files/special/exact", named("exact"), frozenset({"GET"})),
        Route("/thing", named("get-thing")),
        Route("/thing", named("head-thing"), frozenset({"HEAD"})),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/decide", "decide"),
        ("POST", "/v1/decide/batch", "batch"),
        ("POST", "/v1/decide/", 404),  # no normalisation
        ("POST", "/v1/%64ecide", 404),  # no percent-decoding
        ("POST", "/V1/DECIDE", 404),
        ("GET", "/files", "files"),
        ("GET", "/files/a/b", "files"),
        ("GET", "/filesystem", 404),  # prefixes end at a segment boundary
        ("GET", "/files/special", "special"),
        ("GET", "/files/special/x", "special"),  # the longest prefix wins
        ("PUT", "/files/special/exact", 405),  # an exact route wins over prefixes
        ("GET", "/files/special/exact", "exact"),
        ("HEAD", "/files/a", "files"),  # HEAD falls back to GET
        ("HEAD", "/thing", "head-thing"),  # unless HEAD has its own handler
        ("GET", "/thing", "get-thing"),
        ("GET", "/", 404),
    ],
)
def test_resolution(method: str, path: str, expected: str | int) -> None:
    assert handled_by(ROUTER, method, path) == expected


def test_405_names_the_allowed_methods() -> None:
    resp = answer(ROUTER, "GET", "/v1/decide")
    assert resp.status == 405
    assert dict(resp.headers)["allow"] == "POST"
    assert b'"code":"request.method_not_allowed"' in resp.body
    assert dict(answer(ROUTER, "DELETE", "/files/x").headers)["allow"] == "GET, HEAD"
    assert dict(answer(ROUTER, "POST", "/files/special").headers)["allow"] == "GET, HEAD, PUT"


def test_refusals_are_reported() -> None:
    seen: list[ErrorCode] = []
    router = Router([Route("/a", named("a"))], on_refusal=seen.append)
    assert answer(router, "GET", "/b").status == 404
    assert answer(router, "POST", "/a").status == 405
    assert answer(router, "GET", "/a").status == 200
    assert seen == [ErrorCode.REQUEST_NOT_FOUND, ErrorCode.REQUEST_METHOD_NOT_ALLOWED]


def test_a_root_prefix_catches_everything_else() -> None:
    router = Router([Route("/", named("root"), prefix=True), Route("/a", named("a"))])
    assert handled_by(router, "GET", "/a") == "a"
    assert handled_by(router, "GET", "/anything/else") == "root"


def test_routes_are_kept_in_order() -> None:
    routes = [Route("/a", named("a")), Route("/b", named("b"), prefix=True)]
    assert Router(routes).routes == tuple(routes)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Route("nope", named("x")), "starts with"),
        (lambda: Route("/x", named("x"), frozenset()), "no methods"),
        (lambda: Route("/x", named("x"), frozenset({"get"})), "upper-case"),
        (
            lambda: Router([Route("/x", named("1")), Route("/x", named("2"), frozenset({"GET"}))]),
            "routed twice",
        ),
        (
            lambda: Router(
                [Route("/x", named("1"), prefix=True), Route("/x/", named("2"), prefix=True)]
            ),
            "routed twice",
        ),
    ],
)
def test_invalid_routes(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]
