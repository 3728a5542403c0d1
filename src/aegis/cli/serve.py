"""`aegis serve`: run the gateway until SIGINT/SIGTERM, then drain and stop.

Exit codes: 0 after a clean stop; 3 when the configuration, the policy, the
audit key or a listener address cannot be used (the message says which).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from aegis.errors import AegisError, PolicyLoadError
from aegis.server import build_gateway
from aegis.server.errors import ConfigError
from aegis.settings import SettingsError, load_settings

EXIT_CONFIG = 3


def _refuse(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(EXIT_CONFIG)


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
        gateway = build_gateway(
            settings,
            environ=dict(os.environ),
            base_dir=config.parent if config is not None else Path.cwd(),
        )
        asyncio.run(gateway.run_until_signalled())
    except (SettingsError, PolicyLoadError) as exc:
        _refuse("\n".join(str(d) for d in exc.diagnostics))
    except AegisError as exc:  # e.g. audit.key_unavailable
        _refuse(str(exc))
    except (ConfigError, ValueError) as exc:
        _refuse(f"config.invalid: {exc}")
    except OSError as exc:  # e.g. a port already in use, an unreadable key file
        _refuse(f"cannot start: {exc}")
