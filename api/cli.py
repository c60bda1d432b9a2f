"""Operator commands: `flask --app api keys create --tenant NAME`."""

from __future__ import annotations

import click
from flask import Blueprint

from app import tenants
from app.errors import ServiceError

bp = Blueprint("keys", __name__, cli_group="keys")


@bp.cli.command("create")
@click.option("--tenant", required=True, help="tenant name (created if new)")
def create_key(tenant: str) -> None:
    """Create an API key for TENANT; the secret is printed alone on the last line."""
    try:
        secret = tenants.create_key(tenant)
    except ServiceError as exc:
        raise click.ClickException(f"{exc.message}: {exc.details}") from None
    click.echo(
        f"Created an API key for tenant {tenant!r}. It is shown once; store it now:", err=True
    )
    click.echo(secret)


@bp.cli.command("verify")
@click.argument("secret")
def verify_key(secret: str) -> None:
    """Exit 0 if SECRET is a valid key (printing its tenant), 1 if not."""
    tenant = tenants.authenticate(secret)
    if tenant is None:
        raise click.ClickException("not a valid API key")
    click.echo(tenant.name)
