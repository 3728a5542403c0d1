"""Shared plumbing for the stores' backends (one concept each)."""
