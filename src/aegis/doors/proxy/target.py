"""Request-targets a forward proxy accepts, read by the parser the policy uses.

A proxy's target is the whole egress decision, so it is parsed exactly once, by
:func:`aegis.net.parse_destination` (the WHATWG host parser, which is also what
the policy engine matches ``destination`` conditions with), and the proxy dials
the host *that* parse produced -- never a string re-split by hand. The
destination handed to the policy is rebuilt from the parsed parts, so the host
the policy decides on and the host the proxy connects to are one value:
``http://api.stripe.com@evil.test/`` is decided (and dialled) as ``evil.test``,
``http://0x7f.1/`` as ``127.0.0.1``, ``api%2Estripe.com`` as ``api.stripe.com``,
and a Cyrillic homograph as its ``xn--`` name, which no ASCII allowlist entry
matches.

Two forms (RFC 9112 §3.2):

* absolute-form ``http://host[:port]/path?query`` for plain HTTP (§3.2.2);
  origin-form (``/path``) is for origin servers, not proxies: 400;
* authority-form ``host:port`` for CONNECT only (§3.2.3; RFC 9110 §9.3.6). The
  port is required; userinfo, a path or anything else makes it unparseable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import ada_url

from aegis.doors.proxy.responses import RequestRefusedError
from aegis.errors import ErrorCode
from aegis.net import Host, HostKind, parse_destination

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
#: RFC 3986 §3.2: the authority ends at the first "/", "?" or "#".
_AUTHORITY_END = re.compile(r"[/?#]")
HTTP_PORT = 80
HTTPS_PORT = 443


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: the parsed host, its port, and for plain HTTP the
    origin-form path and query the upstream receives."""

    host: Host
    port: int
    #: The ToolCall destination: a URL the policy engine parses back to ``host``.
    destination: str
    path: str = ""
    query: str = ""

    @property
    def dial_host(self) -> str:
        """The name or address to connect to (IPv6 without its brackets)."""
        if self.host.kind is HostKind.IPV6:
            return self.host.name[1:-1]
        return self.host.name

    @property
    def authority(self) -> str:
        """The Host header for the upstream (RFC 9112 §3.2.2: the proxy replaces
        whatever Host the client sent with the target's authority)."""
        if self.port == HTTP_PORT:
            return self.host.name
        return f"{self.host.name}:{self.port}"

    @property
    def origin_form(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


def _refused(reason: str) -> RequestRefusedError:
    return RequestRefusedError(400, ErrorCode.REQUEST_DESTINATION_REFUSED, reason)


def parse_absolute_target(target: str) -> Target:
    """An absolute-form request-target (RFC 9112 §3.2.2), or RequestRefusedError."""
    scheme = _SCHEME.match(target)
    if scheme is None:
        if target.startswith("/") or target == "*":
            raise RequestRefusedError(
                400,
                ErrorCode.REQUEST_MALFORMED,
                "this is a forward proxy: send the absolute URL (RFC 9112 §3.2.2), "
                "or CONNECT host:port for TLS",
            )
        raise _refused("the request-target is not an absolute URL")
    name = scheme.group(1).lower()
    if name == "https":
        raise _refused("https:// through the proxy uses CONNECT; TLS is not originated here")
    if name != "http":
        raise _refused(f"scheme {name!r} is not forwarded (http:// or CONNECT only)")
    rest = target[scheme.end() :]
    if not _AUTHORITY_END.split(rest, maxsplit=1)[0]:
        # "http:///x" has an empty authority to RFC 3986 but the host "x" to WHATWG.
        raise _refused("the URL has no authority")
    host = parse_destination(target)
    if host is None or host.port is None:
        raise _refused("the destination cannot be parsed unambiguously")
    if host.port == 0:
        raise _refused("port 0 is not a destination")
    try:
        url = ada_url.URL(target)
        path: str = url.pathname or "/"
        search: str = url.search
    except ValueError:
        raise _refused("the destination cannot be parsed") from None
    query = search[1:] if search.startswith("?") else search
    port_part = "" if host.port == HTTP_PORT else f":{host.port}"
    destination = f"http://{host.name}{port_part}{path}{search}"
    return Target(host, host.port, destination, path, query)


def parse_connect_target(target: str) -> Target:
    """An authority-form CONNECT target ``host:port`` (RFC 9110 §9.3.6), or RequestRefusedError.

    The destination is ``https://host:443`` when the port is 443 and
    ``tcp://host:port`` otherwise: the proxy does not see inside the tunnel, so
    it only claims TLS where the port says so, and a policy can insist on it
    with ``scheme_in: [https]`` or ``port_in: [443]``.
    """
    if "/" in target or "@" in target or "\\" in target:
        raise _refused("a CONNECT target is host:port, nothing more")
    host = parse_destination(target)
    if host is None:
        raise _refused("the CONNECT target cannot be parsed")
    if host.port is None or host.port == 0:
        raise _refused("a CONNECT target needs a port (host:port)")
    scheme = "https" if host.port == HTTPS_PORT else "tcp"
    return Target(host, host.port, f"{scheme}://{host.name}:{host.port}")
