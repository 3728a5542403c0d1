"""The policy engine benchmark: ``python -m benchmarks.engine [--quick] [--calls N]``.

Prints one JSON document (see benchmarks/README.md for how to read it).
"""
