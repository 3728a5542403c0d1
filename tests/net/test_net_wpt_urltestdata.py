"""parse_url_host against the Web Platform Tests URL corpus (urltestdata.json).

Every object case is checked; strings in the array are section comments.

* ``failure: true`` -> ``None``. With a base, the failing parse may be the
  relative one; the URL constructor semantics are the same either way.
* a non-empty expected ``hostname`` -> ``Host.name`` is exactly that.
* an empty expected ``hostname`` (``file:///x``, ``sc:/path``, ``sc://@/``) ->
  ``None``: the URL is valid but there is no host to match a pattern against.

Beyond the hostname, the host's kind and port must agree with the case: IPv6
hosts are bracketed, the port is the explicit one or the scheme default.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aegis.net import Host, HostKind, parse_url_host

DEFAULT_PORTS = {"http:": 80, "https:": 443, "ws:": 80, "wss:": 443, "ftp:": 21}
SPECIAL = {*DEFAULT_PORTS, "file:"}


@pytest.fixture(scope="module")
def cases(corpus_file: Callable[[str], Path]) -> list[dict[str, Any]]:
    data = json.loads(corpus_file("wpt-url/urltestdata.json").read_text(encoding="utf-8"))
    found = [case for case in data if isinstance(case, dict)]
    assert found, "urltestdata.json holds no test objects"
    return found


def _describe(case: dict[str, Any], got: Host | None) -> str:
    return f"input={case['input']!r} base={case.get('base')!r} expected={case} got={got!r}"


def _report(kind: str, mismatches: list[str]) -> str:
    head = "\n  ".join(mismatches[:10])
    return f"{len(mismatches)} {kind} disagreements with WPT, first ones:\n  {head}"


def test_expected_failures_are_none(cases: list[dict[str, Any]]) -> None:
    failures = [case for case in cases if case.get("failure")]
    mismatches = []
    for case in failures:
        got = parse_url_host(case["input"], case.get("base"))
        if got is not None:
            mismatches.append(_describe(case, got))
    print(f"WPT failure cases: {len(failures)}, disagreements: {len(mismatches)}")
    assert failures
    assert not mismatches, _report("failure", mismatches)


def test_hostnames_agree(cases: list[dict[str, Any]]) -> None:
    with_host = [case for case in cases if not case.get("failure") and case["hostname"]]
    mismatches = []
    for case in with_host:
        got = parse_url_host(case["input"], case.get("base"))
        if got is None or got.name != case["hostname"]:
            mismatches.append(_describe(case, got))
    print(f"WPT cases with a hostname: {len(with_host)}, disagreements: {len(mismatches)}")
    assert with_host
    assert not mismatches, _report("hostname", mismatches)


def test_empty_hostname_is_no_host(cases: list[dict[str, Any]]) -> None:
    no_host = [case for case in cases if not case.get("failure") and not case["hostname"]]
    mismatches = []
    for case in no_host:
        got = parse_url_host(case["input"], case.get("base"))
        if got is not None:
            mismatches.append(_describe(case, got))
    print(f"WPT valid cases without a host: {len(no_host)}, disagreements: {len(mismatches)}")
    assert no_host
    assert not mismatches, _report("empty-hostname", mismatches)


def test_kind_and_port_agree(cases: list[dict[str, Any]]) -> None:
    mismatches = []
    for case in cases:
        if case.get("failure") or not case["hostname"]:
            continue
        got = parse_url_host(case["input"], case.get("base"))
        assert got is not None  # test_hostnames_agree reports these
        protocol = case["protocol"]
        port = int(case["port"]) if case["port"] else DEFAULT_PORTS.get(protocol)
        if case["hostname"].startswith("["):
            kind_ok = got.kind is HostKind.IPV6 and got.ip is not None
        elif protocol not in SPECIAL:
            kind_ok = got.kind is HostKind.OPAQUE and got.ip is None
        else:
            kind_ok = got.kind in (HostKind.DOMAIN, HostKind.IPV4)
            kind_ok = kind_ok and (got.ip is not None) == (got.kind is HostKind.IPV4)
        if not kind_ok or got.port != port:
            mismatches.append(_describe(case, got))
    assert not mismatches, _report("kind/port", mismatches)
