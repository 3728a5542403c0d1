"""MCP proxy latency benchmark: ``python -m benchmarks.mcp``."""
