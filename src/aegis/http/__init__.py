"""A small HTTP/1.1 layer shared by the HTTP-speaking doors (types, server, routing)."""

from aegis.http.types import Handler, HttpRequest, HttpResponse, json_response

__all__ = ["Handler", "HttpRequest", "HttpResponse", "json_response"]
