"""Who is calling: the ``Proxy-Authorization`` header (RFC 9110 §11.7.2).

Interim scheme, until short-lived agent tokens exist (DESIGN.md C4):

* ``Basic base64("<tenant>/<agent_id>:<token>")`` (RFC 7617, UTF-8). This is what
  ``HTTP_PROXY=http://acme%2Fcrm-agent:TOKEN@proxy:8080`` makes every common
  client send: the user name is ``<tenant>/<agent_id>`` (the ``/`` written
  ``%2F`` in the URL), the password is the token. The token may be empty while
  the pipeline's identity stage does not verify tokens.
* ``Bearer <token>`` (RFC 6750 §2.1) only where the proxy is configured with
  ``bearer_identity = (tenant, agent_id)``: a Bearer token does not name its
  agent until tokens are verified, so without that setting it is refused.

Anything else -- no header, two of them, another scheme, bad base64, no ``:``, an
empty tenant or agent -- is ``identity.missing``, answered 407 with a
``Proxy-Authenticate`` challenge. The token goes into
``RequestContext.credentials`` for the identity stage; the header itself is
hop-by-hop and never forwarded.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from aegis.doors.proxy.responses import STATUS_PROXY_AUTH, RequestRefusedError
from aegis.errors import ErrorCode

#: RFC 9110 §11.2 token68, the syntax of a Bearer credential (RFC 6750 §2.1).
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_IDENT_MAX = 256


@dataclass(frozen=True, slots=True)
class ProxyIdentity:
    tenant: str
    agent_id: str
    token: str | None


def _missing(reason: str) -> RequestRefusedError:
    # The answer to a request without usable credentials does not depend on the
    # body, but the body may still be unread: the connection closes after it.
    return RequestRefusedError(STATUS_PROXY_AUTH, ErrorCode.IDENTITY_MISSING, reason)


def _ident(value: str, what: str) -> str:
    if not value or len(value) > _IDENT_MAX or not value.isprintable():
        raise _missing(f"the {what} in Proxy-Authorization is empty or unusable")
    return value


def identify(values: list[str], *, bearer_identity: tuple[str, str] | None = None) -> ProxyIdentity:
    """The identity ``Proxy-Authorization`` states, or RequestRefusedError (407)."""
    if not values:
        raise _missing("Proxy-Authorization is required: Basic base64(tenant/agent_id:token)")
    if len(values) > 1:
        raise _missing("more than one Proxy-Authorization")
    scheme, _, credentials = values[0].strip().partition(" ")
    credentials = credentials.strip(" ")
    scheme = scheme.lower()  # auth-scheme is case-insensitive (RFC 9110 §11.1)
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise _missing("Proxy-Authorization Basic credentials are not base64 UTF-8") from None
        user, colon, token = decoded.partition(":")
        tenant, slash, agent_id = user.partition("/")
        if not colon or not slash:
            raise _missing("the Basic user name must be <tenant>/<agent_id>")
        if token and not token.isprintable():
            raise _missing("the token in Proxy-Authorization is unusable")
        return ProxyIdentity(_ident(tenant, "tenant"), _ident(agent_id, "agent_id"), token or None)
    if scheme == "bearer":
        if bearer_identity is None:
            raise _missing(
                "Bearer tokens are not verified by this proxy yet; "
                "use Basic base64(tenant/agent_id:token)"
            )
        if not _TOKEN68.fullmatch(credentials):
            raise _missing("the Bearer token is not a token68")
        tenant, agent_id = bearer_identity
        return ProxyIdentity(tenant, agent_id, credentials)
    raise _missing(f"unsupported Proxy-Authorization scheme {scheme!r}")
