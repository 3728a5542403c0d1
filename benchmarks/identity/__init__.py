"""Identity benchmark: decision API throughput with and without agent tokens."""
