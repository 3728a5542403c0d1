"""Hop-by-hop fields and Via: what a proxy must not pass on, and what it adds.

RFC 9110 §7.6.1: a proxy removes ``Connection`` and every field it names, and
the fields that are hop-by-hop whether named or not (``Keep-Alive``,
``Proxy-Connection``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``),
and the proxy-authentication fields, which concern only the hop to this proxy
(§11.7). Framing (Content-Length / Transfer-Encoding) is decided again by the
proxy for the next hop, so both are removed here and re-added by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-authentication-info",
    }
)
#: Set again by the proxy on the next hop: the framing, the target's Host
#: (RFC 9112 §3.2.2), Via (combined below), and Expect, which the proxy answers
#: itself (it sends "100 Continue" when it wants the body, RFC 9110 §10.1.1).
REQUEST_REBUILT = frozenset({"content-length", "host", "via", "expect"})
RESPONSE_REBUILT = frozenset({"content-length", "via"})


def connection_options(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The field names listed in Connection (RFC 9110 §7.6.1), lower-case."""
    names: set[str] = set()
    for name, value in headers:
        if name == "connection":
            names.update(token.strip(" \t").lower() for token in value.split(","))
    names.discard("")
    return frozenset(names)


def end_to_end(
    headers: Iterable[tuple[str, str]], rebuilt: frozenset[str]
) -> list[tuple[str, str]]:
    """``headers`` without hop-by-hop fields, the fields Connection names, and ``rebuilt``."""
    headers = list(headers)
    drop = HOP_BY_HOP | rebuilt | connection_options(headers)
    return [(name, value) for name, value in headers if name not in drop]


def via(headers: Iterable[tuple[str, str]], version: str, pseudonym: str) -> str:
    """The Via value for the next hop: what came in, then this hop (RFC 9110 §7.6.3:
    ``received-protocol`` is the version of the message this proxy received)."""
    received = [value for name, value in headers if name == "via" and value]
    received.append(f"{version} {pseudonym}")
    return ", ".join(received)


def combine(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Field lines as one value per name, joined with ", " (RFC 9110 §5.3). For the
    policy's view of the request; the forwarded request keeps the lines as sent."""
    out: dict[str, str] = {}
    for name, value in headers:
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out
