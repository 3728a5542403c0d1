"""Evidence that survives: a hash-chained, Merkle-checkpointed, signed audit log."""
