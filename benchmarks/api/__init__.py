"""Decision API benchmark: ``python -m benchmarks.api`` (see README.md here)."""
