"""The `aegis` command. Sub-groups live in their own modules."""

from __future__ import annotations

import warnings

import click

from aegis import __version__
from aegis.cli.audit import audit_group
from aegis.cli.bundle import bundle_group
from aegis.cli.control import agents_group, kill_cmd, tokens_group
from aegis.cli.policy import policy_group
from aegis.cli.rollout import promote_cmd, rollback_cmd, status_cmd
from aegis.cli.serve import serve_cmd


@click.group()
@click.version_option(__version__, prog_name="aegis")
def cli() -> None:
    """Aegis: runtime policy and observability gateway for AI agents."""


# Offline policy commands live in cli/policy.py; these talk to a running gateway.
policy_group.add_command(status_cmd)
policy_group.add_command(promote_cmd)
policy_group.add_command(rollback_cmd)
cli.add_command(audit_group)
cli.add_command(policy_group)
cli.add_command(serve_cmd)
cli.add_command(agents_group)
cli.add_command(tokens_group)
cli.add_command(kill_cmd)
cli.add_command(bundle_group)


def main() -> None:
    # joserfc warns on every use of the JOSE "EdDSA" identifier, which RFC 9864
    # deprecates in favour of the fully specified "Ed25519". Tokens and bundle
    # signatures still carry "EdDSA", the identifier deployed verifiers know; on a
    # terminal the warning is noise, not news for the operator.
    warnings.filterwarnings("ignore", message="EdDSA is deprecated via RFC 9864")
    cli()
