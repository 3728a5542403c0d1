"""From a tool's arguments to ``params``, and from a sanitize decision back.

The rule, shared by :func:`~aegis.sdk.guard` and the LangChain adapter:

* every argument whose value is JSON data -- ``None``, ``bool``, ``int``,
  ``float``, ``str``, lists/tuples of JSON data, dicts with ``str`` keys and
  JSON data values -- is a param, under its parameter name (tuples become
  lists; ``str``/``int`` enums count as their value);
* any other value (a client object, bytes, a callback, a dataclass) is left
  out of params and reaches the tool unchanged. A policy never sees it, so give
  every argument a policy must judge a JSON type;
* a JSON value the core refuses (NaN, an integer beyond 2**63, nesting deeper
  than 32) is kept, and the call is refused as malformed -- never decided
  without it.

After a sanitize decision, each param whose sanitized value differs from the
original replaces that argument (a tuple stays a tuple); everything else is
passed as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from aegis.core.call import MAX_PARAM_DEPTH, JsonValue
from aegis.core.decision import Decision, Outcome
from aegis.errors import ErrorCode
from aegis.sdk.errors import InvalidCall, ProtocolError


class _NotJson:
    __slots__ = ()


NOT_JSON: Final = _NotJson()


def as_json(value: object, depth: int = 0) -> JsonValue | _NotJson:
    """``value`` as plain JSON data, or :data:`NOT_JSON`."""
    if depth > MAX_PARAM_DEPTH:
        # Deeper than the core accepts (or a cycle): refuse the call, do not drop the value.
        raise InvalidCall(ErrorCode.CALL_TOO_DEEP, f"nested deeper than {MAX_PARAM_DEPTH}")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        items: list[JsonValue] = []
        for item in value:
            converted = as_json(item, depth + 1)
            if isinstance(converted, _NotJson):
                return NOT_JSON
            items.append(converted)
        return items
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                return NOT_JSON
            converted = as_json(item, depth + 1)
            if isinstance(converted, _NotJson):
                return NOT_JSON
            out[key] = converted
        return out
    return NOT_JSON


def json_params(arguments: Iterable[tuple[str, object]]) -> dict[str, JsonValue]:
    """The params of named arguments, by the rule in this module's docstring."""
    params: dict[str, JsonValue] = {}
    for name, value in arguments:
        converted = as_json(value)
        if not isinstance(converted, _NotJson):
            params[name] = converted
    return params


def sanitized_updates(params: Mapping[str, JsonValue], decision: Decision) -> dict[str, JsonValue]:
    """The params a sanitize decision changed, with their new values ({} otherwise).

    Fails closed: a sanitize decision that does not say what every param became
    cannot be applied, so it is an unreadable answer (ProtocolError).
    """
    if decision.outcome is not Outcome.SANITIZE:
        return {}
    sanitized = decision.sanitized_params
    if sanitized is None:
        raise ProtocolError("a sanitize decision came without sanitized_params")
    updates: dict[str, JsonValue] = {}
    for name, original in params.items():
        if name not in sanitized:
            raise ProtocolError(f"the sanitized params lack {name!r}")
        new = sanitized[name]
        if new != original:
            updates[name] = new
    return updates


def restore_shape(new: JsonValue, original: object) -> object:
    """A sanitized value in the container type the tool was given (tuple stays tuple)."""
    if isinstance(original, tuple) and isinstance(new, list):
        return tuple(new)
    return new
