"""Aegis: runtime policy and observability gateway for AI agents."""

__version__ = "0.1.0"
