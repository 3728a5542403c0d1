"""HTTP clients for the decision API: :class:`AegisClient` (sync) and
:class:`AsyncAegisClient` (asyncio), both on httpx.

The contract they speak, and nothing more:

* ``POST /v1/decide`` with the ToolCall JSON and ``Authorization: Bearer <token>``
  answers 200 with ``Decision.to_dict()`` for every decided outcome (allow,
  sanitize, approval_needed, deny);
* ``POST /v1/decide/batch`` with ``{"calls": [...]}`` answers 200 with
  ``{"results": [{"index": i, "decision": {...}}, ...]}`` in call order (the
  shape of ``aegis.doors.api``; an item may instead hold ``"error"``);
* a refused request answers 4xx with ``{"error": {"code", "message", "path"}}``.

Errors are mapped at this boundary (as httpx's ``map_exceptions`` does): a
transport failure, a timeout, a 5xx or an unreadable answer is
:class:`~aegis.sdk.errors.AegisUnavailable` -- "could not decide" -- and the
client's fail mode (:mod:`aegis.sdk.failmode`) turns it into the answer;
closed by default. A 4xx is :class:`~aegis.sdk.errors.AegisRequestError` (or
:class:`~aegis.sdk.errors.InvalidCall` for ``call.*``), never subject to the
fail mode: bad input is not an outage.

Calls are not retried: a decision may count against a limit or open an approval
ticket, so a blind retry is not idempotent. Connection-level retries are safe;
pass ``transport=httpx.HTTPTransport(retries=2)`` for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

import httpx

from aegis import __version__
from aegis.core.call import ToolCall
from aegis.core.decision import Decision
from aegis.errors import ErrorCode
from aegis.sdk.errors import (
    AegisTimeout,
    AegisUnavailable,
    ProtocolError,
    error_code,
    raise_for_decision,
)
from aegis.sdk.failmode import FailOpenGate, FailOpenHook
from aegis.sdk.wire import (
    CallLike,
    decision_from_dict,
    decisions_from_batch,
    request_error,
    validate_call,
)

DECIDE_PATH = "/v1/decide"
BATCH_PATH = "/v1/decide/batch"
DEFAULT_TIMEOUT = 2.0

#: A bearer token, or a function returning the current one (short-lived tokens).
TokenSource = str | Callable[[], str] | None

#: Statuses that mean "nobody decided" rather than "the request is wrong".
_UNAVAILABLE_4XX = frozenset({408, 429})


class _ClientCore:
    """What both clients share: configuration, request bodies, answer reading."""

    def __init__(
        self,
        token: TokenSource,
        fail_open_reads: Iterable[str],
        on_fail_open: FailOpenHook | None,
    ) -> None:
        self._token = token
        self.fail_open = FailOpenGate(fail_open_reads, on_fail_open)

    @property
    def fail_open_count(self) -> int:
        """Calls let through because the service could not be asked (fail-open reads)."""
        return self.fail_open.count

    def _auth_headers(self) -> dict[str, str]:
        token = self._token() if callable(self._token) else self._token
        return {"authorization": f"Bearer {token}"} if token else {}

    @staticmethod
    def _batch_body(calls: Sequence[CallLike]) -> tuple[list[ToolCall], dict[str, Any]]:
        checked = [validate_call(c, f"calls[{i}]") for i, c in enumerate(calls)]
        return checked, {"calls": [c.to_dict() for c in checked]}

    @staticmethod
    def _answer(response: httpx.Response) -> object:
        """The JSON of a 200, or the mapped error for anything else."""
        status = response.status_code
        try:
            body: object = json.loads(response.content)
        except ValueError:
            body = None
        if status == 200:
            if body is None:
                raise ProtocolError("the decision service answered 200 without JSON")
            return body
        if status >= 500 or status in _UNAVAILABLE_4XX:
            raise AegisUnavailable(
                _error_code(body, ErrorCode.PIPELINE_INTERNAL_ERROR),
                f"the decision service answered HTTP {status}",
            )
        raise request_error(body, status)


def _error_code(body: object, fallback: ErrorCode) -> ErrorCode:
    err = body.get("error") if isinstance(body, Mapping) else None
    raw = err.get("code") if isinstance(err, Mapping) else None
    return error_code(raw if isinstance(raw, str) else "", fallback)


@contextmanager
def _map_transport_errors(url: httpx.URL | str) -> Generator[None, None, None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise AegisTimeout(
            ErrorCode.PIPELINE_TIMEOUT, f"no answer from the decision service at {url}: {exc!r}"
        ) from exc
    except httpx.TransportError as exc:
        raise AegisUnavailable(
            ErrorCode.REQUEST_UPSTREAM_FAILED,
            f"cannot reach the decision service at {url}: {exc!r}",
        ) from exc


def _client_kwargs(
    base_url: str,
    timeout: float | httpx.Timeout,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "timeout": timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
        "headers": {
            "accept": "application/json",
            "user-agent": f"aegis-sdk-python/{__version__}",
            **(headers or {}),
        },
        "follow_redirects": False,  # never carry the bearer token elsewhere
    }


class AegisClient(_ClientCore):
    """A synchronous client for the decision API.

    ``decide`` returns every decided outcome as a :class:`Decision`; ``check``
    raises :class:`~aegis.sdk.errors.PolicyViolation` (or a subclass) when the
    call is not permitted. Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: TokenSource = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        fail_open_reads: Iterable[str] = (),
        on_fail_open: FailOpenHook | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(token, fail_open_reads, on_fail_open)
        self._http = httpx.Client(transport=transport, **_client_kwargs(base_url, timeout, headers))

    def decide(self, call: CallLike) -> Decision:
        checked = validate_call(call)
        try:
            return decision_from_dict(self._post(DECIDE_PATH, checked.to_dict()))
        except AegisUnavailable as exc:
            return self.fail_open.resolve(checked, exc)

    def decide_batch(self, calls: Sequence[CallLike]) -> list[Decision]:
        checked, body = self._batch_body(calls)
        if not checked:
            return []
        try:
            return decisions_from_batch(self._post(BATCH_PATH, body), len(checked))
        except AegisUnavailable as exc:
            return self.fail_open.resolve_batch(checked, exc)

    def check(self, call: CallLike) -> Decision:
        """``decide``, raising PolicyViolation unless the call is permitted."""
        return raise_for_decision(self.decide(call))

    def _post(self, path: str, body: dict[str, Any]) -> object:
        with _map_transport_errors(self._http.base_url):
            response = self._http.post(path, json=body, headers=self._auth_headers())
        return self._answer(response)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncAegisClient(_ClientCore):
    """The asyncio twin of :class:`AegisClient` (``await client.decide(call)``)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: TokenSource = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        fail_open_reads: Iterable[str] = (),
        on_fail_open: FailOpenHook | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(token, fail_open_reads, on_fail_open)
        self._http = httpx.AsyncClient(
            transport=transport, **_client_kwargs(base_url, timeout, headers)
        )

    async def decide(self, call: CallLike) -> Decision:
        checked = validate_call(call)
        try:
            return decision_from_dict(await self._post(DECIDE_PATH, checked.to_dict()))
        except AegisUnavailable as exc:
            return self.fail_open.resolve(checked, exc)

    async def decide_batch(self, calls: Sequence[CallLike]) -> list[Decision]:
        checked, body = self._batch_body(calls)
        if not checked:
            return []
        try:
            return decisions_from_batch(await self._post(BATCH_PATH, body), len(checked))
        except AegisUnavailable as exc:
            return self.fail_open.resolve_batch(checked, exc)

    async def check(self, call: CallLike) -> Decision:
        return raise_for_decision(await self.decide(call))

    async def _post(self, path: str, body: dict[str, Any]) -> object:
        with _map_transport_errors(self._http.base_url):
            response = await self._http.post(path, json=body, headers=self._auth_headers())
        return self._answer(response)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
