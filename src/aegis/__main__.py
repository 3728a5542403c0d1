"""`python -m aegis` is the `aegis` command."""

from aegis.cli.main import main

main()
