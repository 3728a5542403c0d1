"""`aegis serve`: the gateway assembled from settings (the app factory)."""

from aegis.server.gateway import Gateway, build_gateway

__all__ = ["Gateway", "build_gateway"]
