"""Why the gateway cannot start as configured."""

from __future__ import annotations

from aegis.errors import ErrorCode


class ConfigError(Exception):
    """A door's options in the settings file are not valid."""

    code = ErrorCode.CONFIG_INVALID
