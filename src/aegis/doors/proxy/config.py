"""Settings of the egress forward proxy: one frozen value, checked once when built."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: Headers forwarded upstream but never shown to the policy (nor, through
#: ``params``, to evidence): they carry the agent's secrets for the tool.
DEFAULT_PRIVATE_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

#: Methods mapped to the read tool when the request has no body (RFC 9110 §9.2.1:
#: GET and HEAD are safe). A GET that carries a body sends data out and is a write.
DEFAULT_READ_METHODS = frozenset({"GET", "HEAD"})


class UninspectedBody(StrEnum):
    """What to do with a request body the policy cannot see.

    A body is uninspected when it is larger than ``inspect_body_limit``, carries a
    ``Content-Encoding``, or is neither JSON nor UTF-8 text. Refusing is the safe
    default: a DLP ``sanitize`` rule cannot redact what it never saw, and a body
    that changes shape (gzip it, send it as bytes) must not slip past one.
    """

    #: 413 ``request.too_large`` (over the limit) or 415
    #: ``request.unsupported_media_type`` (undecodable); nothing is sent upstream.
    REFUSE = "refuse"
    #: Decide without ``params.body`` and stream the body upstream unbuffered. A
    #: ``sanitize`` decision is then refused (413): its obligation cannot be met.
    FORWARD = "forward"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Everything the forward proxy can be told. Times are seconds, sizes bytes."""

    #: ``RequestContext.door`` and the ``door`` label of metrics and logs.
    door: str = "proxy"
    #: Tool of an absolute-form request whose method is in ``read_methods`` and
    #: that has no body; ``kind: read`` (examples/egress/policy.yaml's read tool).
    read_tool: str = "http.get"
    #: Tool of every other absolute-form request; ``kind: write``.
    write_tool: str = "http.request"
    #: Tool of a CONNECT tunnel; ``kind: write`` (TLS is not intercepted, so the
    #: proxy cannot tell a read from a write and a tunnel never fails open).
    connect_tool: str = "http.request"
    read_methods: frozenset[str] = DEFAULT_READ_METHODS
    #: Headers the policy never sees (they are still forwarded).
    private_headers: frozenset[str] = DEFAULT_PRIVATE_HEADERS
    #: ``(tenant, agent_id)`` a ``Proxy-Authorization: Bearer`` token stands for,
    #: until token verification (DESIGN.md C4) reads both from the token itself.
    #: ``None`` (the default): Bearer is refused with 407, use Basic.
    bearer_identity: tuple[str, str] | None = None
    #: The realm of ``Proxy-Authenticate`` challenges (RFC 9110 §11.5).
    realm: str = "aegis"
    #: The pseudonym this hop adds to ``Via`` (RFC 9110 §7.6.3).
    via: str = "aegis"

    #: Request bodies up to this size are buffered and shown to the policy as
    #: ``params.body``. Kept below the core's longest string (1,000,000
    #: characters, ``aegis.core.call.MAX_STRING_LENGTH``) so a text body fits.
    inspect_body_limit: int = 1_000_000
    uninspected_body: UninspectedBody = UninspectedBody.REFUSE

    #: Request line plus header fields; larger is 431 (RFC 6585 §5).
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    #: Longest request-target; longer is 414 (RFC 9110 §15.5.15).
    max_target_length: int = 8192

    #: From the first byte of a request (or the accept, for the first request)
    #: to the end of its head: slowloris gets 408 and a closed connection.
    head_timeout: float = 10.0
    #: An idle keep-alive connection, or a request body that stops arriving.
    idle_timeout: float = 60.0
    connect_timeout: float = 10.0
    #: Longest wait for the upstream's response head, or between body reads.
    response_timeout: float = 300.0
    #: A tunnel with no byte in either direction for this long is closed.
    tunnel_idle_timeout: float = 300.0
    #: Connections served at once; more are answered 503 and closed.
    max_connections: int = 1024
    #: One read from a socket, and the most a splice or relay holds per direction.
    buffer_size: int = 64 * 1024
    #: After a refusal that leaves request bytes unread, the proxy reads and
    #: discards for up to this long before closing, so the client sees the answer
    #: instead of a TCP reset (RFC 9112 §9.6, "tear-down").
    linger_timeout: float = 1.0

    def __post_init__(self) -> None:
        for name in ("read_tool", "write_tool", "connect_tool", "door", "realm", "via"):
            value = getattr(self, name)
            if not value or not value.isprintable() or '"' in value or "\\" in value:
                raise ValueError(f"{name} must be a non-empty printable string without quotes")
        if self.bearer_identity is not None and not all(self.bearer_identity):
            raise ValueError("bearer_identity must name a tenant and an agent_id")
        for name in (
            "max_head_bytes",
            "max_headers",
            "max_target_length",
            "max_connections",
            "buffer_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.inspect_body_limit < 0:
            raise ValueError("inspect_body_limit must be >= 0")
        for name in (
            "head_timeout",
            "idle_timeout",
            "connect_timeout",
            "response_timeout",
            "tunnel_idle_timeout",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.linger_timeout < 0:
            raise ValueError("linger_timeout must be >= 0")
        object.__setattr__(self, "read_methods", frozenset(m.upper() for m in self.read_methods))
        object.__setattr__(
            self, "private_headers", frozenset(h.lower() for h in self.private_headers)
        )
        object.__setattr__(self, "uninspected_body", UninspectedBody(self.uninspected_body))
