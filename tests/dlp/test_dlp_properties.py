"""Property: wherever a card number or an email sits in params, it never survives sanitize."""

from __future__ import annotations

import copy
import json
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis.dlp import Redactor, builtin_detectors

CARDS = [
    "4111111111111111",
    "4111 1111 1111 1111",
    "5555-5555-5555-4444",
    "378282246310005",
    "3782 822463 10005",
    "6011111111111117",
    "3530111333300000",
    "4222222222222",
]
#: Non-word characters on both sides, so the secret starts and ends a token.
SEPARATORS = [" ", "\n", "\t", ", ", "(", ")", ": ", '"', "'", "; ", ". "]

keys = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=6)
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**9), max_value=10**9)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)
json_values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=16,
)
params_strategy = st.dictionaries(keys, json_values, max_size=5)
emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[a-z0-9_+-]{1,8}(\.[a-z0-9]{1,5})?", fullmatch=True),
    st.from_regex(r"[a-z0-9]{1,10}(-[a-z0-9]{1,5})?", fullmatch=True),
    st.from_regex(r"[a-z]{2,6}", fullmatch=True),
)
secrets = st.sampled_from(CARDS) | emails


def _embed(data: st.DataObject, value: Any, secret: str, as_number: bool) -> Any:
    """``value`` with ``secret`` placed somewhere in it (drawn by hypothesis)."""
    payload: Any = int(secret) if as_number else secret
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        value[key] = _embed(data, value[key], secret, as_number)
        return value
    if isinstance(value, list) and value and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(value) - 1))
        value[index] = _embed(data, value[index], secret, as_number)
        return value
    if isinstance(value, str) and not as_number:
        at = data.draw(st.integers(0, len(value)))
        left, right = data.draw(st.sampled_from(SEPARATORS)), data.draw(st.sampled_from(SEPARATORS))
        return f"{value[:at]}{left}{secret}{right}{value[at:]}"
    if isinstance(value, dict):
        value[data.draw(keys)] = payload
        return value
    if isinstance(value, list):
        value.insert(data.draw(st.integers(0, len(value))), payload)
        return value
    return payload


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    params=params_strategy,
    secret=secrets,
    data=st.data(),
    only_relevant=st.booleans(),
)
def test_embedded_secret_never_survives_and_apply_is_deterministic(
    params: dict[str, Any], secret: str, data: st.DataObject, only_relevant: bool
) -> None:
    as_number = secret.isdigit() and data.draw(st.booleans())
    params = _embed(data, params, secret, as_number)
    before = copy.deepcopy(params)
    detectors = builtin_detectors()
    chosen = (
        [detectors["credit_card"], detectors["email"]]
        if only_relevant
        else list(detectors.values())
    )
    redactor = Redactor(detectors=chosen)

    out, redactions = redactor.apply(params)

    assert params == before  # the input is untouched
    dumped = json.dumps(out, ensure_ascii=False)
    assert secret not in dumped
    assert redactions
    assert secret not in repr(redactions)
    assert list(redactions) == sorted(set(redactions), key=lambda r: (r.path, r.detector))
    # Deterministic: the same again, and with the detectors given in another order.
    assert redactor.apply(params) == (out, redactions)
    assert Redactor(detectors=chosen[::-1]).apply(params) == (out, redactions)


@settings(max_examples=100, deadline=None)
@given(params=params_strategy)
def test_no_detectors_no_fields_is_an_exact_copy(params: dict[str, Any]) -> None:
    out, redactions = Redactor().apply(params)
    assert out == params
    assert redactions == ()
