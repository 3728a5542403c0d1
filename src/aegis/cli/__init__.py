"""The `aegis` command line."""
