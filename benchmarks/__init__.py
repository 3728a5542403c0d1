"""Benchmarks for Aegis. Run one with ``python -m benchmarks.<name>`` from the repo root."""
