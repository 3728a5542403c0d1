"""The egress forward proxy door: agents' HTTP(S) traffic through one policy decision.

An HTTP/1.1 forward proxy (RFC 9110 §7.6, RFC 9112 §3.2): plain HTTP in
absolute-form is decided with its method, path, query, headers and body and then
forwarded; HTTPS goes through CONNECT tunnels decided on host and port (TLS is
not intercepted). Every request becomes one ToolCall for the shared pipeline;
docs/doors/proxy.md describes the mapping, the statuses and the limits.

Modules, one concept each:

* :mod:`~aegis.doors.proxy.config` -- :class:`ProxyConfig`;
* :mod:`~aegis.doors.proxy.parsing` -- request heads via llhttp, smuggling checks;
* :mod:`~aegis.doors.proxy.client` -- the client side: parsed events, timeouts, backpressure;
* :mod:`~aegis.doors.proxy.target` -- absolute-form and CONNECT targets, WHATWG-parsed;
* :mod:`~aegis.doors.proxy.identity` -- Proxy-Authorization;
* :mod:`~aegis.doors.proxy.calls` -- requests as ToolCalls, sanitize back into requests;
* :mod:`~aegis.doors.proxy.headers` -- hop-by-hop fields and Via;
* :mod:`~aegis.doors.proxy.forwarding` -- the upstream hop and streamed responses;
* :mod:`~aegis.doors.proxy.tunnel` -- CONNECT splicing;
* :mod:`~aegis.doors.proxy.responses` -- what the proxy answers itself;
* :mod:`~aegis.doors.proxy.server` -- connections, lifecycle, :func:`build_forward_proxy`.
"""

from aegis.doors.proxy.config import ProxyConfig, UninspectedBody
from aegis.doors.proxy.forwarding import Connector, open_tcp
from aegis.doors.proxy.server import ForwardProxy, build_forward_proxy

__all__ = [
    "Connector",
    "ForwardProxy",
    "ProxyConfig",
    "UninspectedBody",
    "build_forward_proxy",
    "open_tcp",
]
