"""`aegis serve`: run the gateway until SIGINT/SIGTERM, then drain and stop."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from aegis.errors import PolicyLoadError
from aegis.server import build_gateway
from aegis.server.gateway import ConfigError
from aegis.settings import SettingsError, load_settings

EXIT_CONFIG = 3


@click.command("serve")
@click.option(
    "-c",
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Gateway configuration (YAML/JSON). Default: built-in defaults on 127.0.0.1.",
)
def serve_cmd(config: Path | None) -> None:
    """Start the gateway: decision API, Envoy ext_authz/ext_proc, forward proxy, MCP proxy."""
    try:
        settings = load_settings(config)
        # The one place the environment is read; it is passed down from here.
        gateway = build_gateway(settings, environ=dict(os.environ))
    except SettingsError as exc:
        for d in exc.diagnostics:
            click.echo(str(d), err=True)
        sys.exit(EXIT_CONFIG)
    except PolicyLoadError as exc:
        for d in exc.diagnostics:
            click.echo(str(d), err=True)
        sys.exit(EXIT_CONFIG)
    try:
        asyncio.run(gateway.run_until_signalled())
    except (ConfigError, ValueError) as exc:
        click.echo(f"config.invalid: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except OSError as exc:  # e.g. a port already in use
        click.echo(f"cannot start: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
