"""``@guard``: put any tool function behind an Aegis decision.

::

    aegis = LocalAegis("examples/finance-payments")

    @guard(aegis, tool="stripe.create_payment", tenant="acme", agent_id="finance-agent")
    def create_payment(amount: float, currency: str, payee: str = "") -> str: ...

Each call binds the arguments to the signature (defaults applied), turns them
into ``params`` (:mod:`aegis.sdk.params` has the rule), builds the ToolCall
with the caller from the decorator or :func:`~aegis.sdk.context.aegis_context`,
and asks Aegis:

* allow: the function runs with its arguments as given;
* sanitize: it runs with the redacted values in place of the originals;
* approval_needed: :class:`~aegis.sdk.errors.ApprovalRequired` (with ``approval_id``);
* deny: :class:`~aegis.sdk.errors.PolicyViolation`
  (:class:`~aegis.sdk.errors.RateLimited` for limits);
* could not decide: the Aegis object's fail mode (closed: AegisUnavailable).

The function never runs unless the decision permits it. A first parameter named
``self`` or ``cls`` is not a param; ``exclude=`` names others to keep out.

Sync functions need a sync Aegis (:class:`~aegis.sdk.LocalAegis`,
:class:`~aegis.sdk.AegisClient`); async functions take either (a sync one is
run in a worker thread, so it does not block the event loop).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Collection, Iterable
from typing import Any, ParamSpec, TypeVar, cast

from aegis.core.call import JsonValue, ToolCall, ToolKind
from aegis.core.decision import Decision
from aegis.sdk.context import CallSpec, tool_kind
from aegis.sdk.errors import raise_for_decision
from aegis.sdk.params import json_params, restore_shape, sanitized_updates
from aegis.sdk.protocols import AnyAegis, SyncAegis, is_async_aegis

P = ParamSpec("P")
R = TypeVar("R")


def guard(
    aegis: AnyAegis,
    *,
    tool: str | None = None,
    tenant: str | None = None,
    agent_id: str | None = None,
    kind: ToolKind | str | None = None,
    parent_chain: Iterable[str] | None = None,
    agent_labels: Iterable[str] | None = None,
    session_id: str | None = None,
    destination: str | None = None,
    cost_estimate: float | None = None,
    exclude: Collection[str] = (),
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Guard a sync or async tool function; ``tool`` defaults to the function's name."""
    if isinstance(parent_chain, str) or isinstance(agent_labels, str):
        raise TypeError("parent_chain and agent_labels are lists of names, not one string")
    chain = tuple(parent_chain) if parent_chain is not None else None
    labels = frozenset(agent_labels) if agent_labels is not None else None
    resolved_kind = tool_kind(kind)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        spec = CallSpec(
            tool=tool or func.__name__,
            tenant=tenant,
            agent_id=agent_id,
            kind=resolved_kind,
            parent_chain=chain,
            agent_labels=labels,
            session_id=session_id,
            destination=destination,
            cost_estimate=cost_estimate,
        )
        binder = ArgumentBinder(func, exclude)
        if inspect.iscoroutinefunction(func):
            return cast(Callable[P, R], _async_wrapper(func, aegis, spec, binder))
        if is_async_aegis(aegis):
            raise TypeError(
                f"guard(): {func.__qualname__} is a sync function; it needs a sync Aegis "
                "(LocalAegis or AegisClient), not an async one"
            )
        return _sync_wrapper(func, cast(SyncAegis, aegis), spec, binder)

    return decorate


def _sync_wrapper(
    func: Callable[P, R], aegis: SyncAegis, spec: CallSpec, binder: ArgumentBinder
) -> Callable[P, R]:
    @functools.wraps(func)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        bound, params = binder.bind(args, kwargs)
        decision = raise_for_decision(aegis.decide(spec.build(params)))
        binder.apply(bound, sanitized_updates(params, decision))
        return func(*bound.args, **bound.kwargs)

    return guarded


def _async_wrapper(
    func: Callable[..., Any], aegis: AnyAegis, spec: CallSpec, binder: ArgumentBinder
) -> Callable[..., Any]:
    @functools.wraps(func)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        bound, params = binder.bind(args, kwargs)
        decision = raise_for_decision(await decide_async(aegis, spec.build(params)))
        binder.apply(bound, sanitized_updates(params, decision))
        return await func(*bound.args, **bound.kwargs)

    return guarded


async def decide_async(aegis: AnyAegis, call: ToolCall) -> Decision:
    """``aegis.decide`` from async code, whichever shape ``aegis`` has."""
    if is_async_aegis(aegis):
        return await aegis.decide(call)
    return await asyncio.to_thread(cast(SyncAegis, aegis).decide, call)


class ArgumentBinder:
    """Binds one function's arguments and maps sanitized params back onto them."""

    def __init__(self, func: Callable[..., Any], exclude: Collection[str] = ()) -> None:
        if isinstance(exclude, str):
            raise TypeError("exclude takes a collection of parameter names, not one string")
        self.signature = inspect.signature(func)
        parameters = list(self.signature.parameters.values())
        self._skip = set(exclude)
        self._var_keyword: str | None = None
        for p in parameters:
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                self._var_keyword = p.name
        unknown = self._skip - set(self.signature.parameters)
        if unknown and self._var_keyword is None:
            raise ValueError(
                f"exclude names no parameter of {func.__qualname__}: {sorted(unknown)}"
            )
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if (
            parameters
            and parameters[0].name in {"self", "cls"}
            and parameters[0].kind in positional
        ):
            self._skip.add(parameters[0].name)

    def bind(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[inspect.BoundArguments, dict[str, JsonValue]]:
        """The bound arguments (defaults applied) and the params they give.

        Wrong arguments raise TypeError here, as calling the function would, and
        before any decision is asked for.
        """
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound, json_params(self._named(bound))

    def _named(self, bound: inspect.BoundArguments) -> list[tuple[str, object]]:
        named: list[tuple[str, object]] = []
        for name, value in bound.arguments.items():
            if name == self._var_keyword:
                named.extend((k, v) for k, v in value.items() if k not in self._skip)
            elif name not in self._skip:
                named.append((name, value))
        return named

    def apply(self, bound: inspect.BoundArguments, updates: dict[str, JsonValue]) -> None:
        """Put sanitized values in place of the arguments they came from."""
        for name, new in updates.items():
            if name in bound.arguments and name != self._var_keyword:
                bound.arguments[name] = restore_shape(new, bound.arguments[name])
            elif self._var_keyword is not None:
                extra = bound.arguments[self._var_keyword]
                extra[name] = restore_shape(new, extra.get(name))
