"""Operator commands: `flask --app api keys create|revoke|list|verify`."""

from __future__ import annotations

import click
from flask import Blueprint

from app import tenants
from app.errors import ServiceError

bp = Blueprint("keys", __name__, cli_group="keys")


@bp.cli.command("create")
@click.option("--tenant", required=True, help="tenant name (created if new)")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(tenants.SCOPES),
    help="a scope of the key (repeat); default: every scope but admin",
)
def create_key(tenant: str, scopes: tuple[str, ...]) -> None:
    """Create an API key for TENANT; the secret is printed alone on the last line."""
    try:
        secret = tenants.create_key(tenant, scopes or tenants.DEFAULT_SCOPES)
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


@bp.cli.command("revoke")
@click.argument("key")
def revoke_key(key: str) -> None:
    """Revoke KEY (the secret, or its first 12 characters as `keys list` shows them)."""
    try:
        count = tenants.revoke(key)
    except ServiceError as exc:
        raise click.ClickException(f"{exc.message}: {exc.details}") from None
    if count == 0:
        raise click.ClickException("no such active key")
    click.echo(f"revoked {count} key(s) {key[: tenants.PREFIX_LEN]}…")


@bp.cli.command("list")
@click.option("--tenant", required=True)
def list_keys(tenant: str) -> None:
    """The keys of TENANT: prefix, scopes, created, revoked (secrets are never stored)."""
    for key in tenants.list_keys(tenant):
        revoked = key["revoked_at"].isoformat() if key["revoked_at"] else "active"
        click.echo(
            f"{key['prefix']}  {','.join(key['scopes'])}  {key['created_at']:%Y-%m-%d}  {revoked}"
        )
