"""Operator commands: `flask --app api keys create|revoke|list|verify`,
`flask --app api scheduling limits|pause|resume|pauses` and `flask --app api providers reseal`."""

from __future__ import annotations

import click
from flask import Blueprint

from app import providers, tenants
from app.errors import ServiceError
from app.scheduling import limits, pauses

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


# --- scheduling: `flask --app api scheduling limits|pause|resume|pauses` ------------------

scheduling_bp = Blueprint("scheduling_cli", __name__, cli_group="scheduling")


def _tenant_id(name: str | None):
    if name is None:
        return None
    found = tenants.find_tenant(name)
    if found is None:
        raise click.ClickException(f"no tenant named {name!r}")
    return found


@scheduling_bp.cli.command("limits")
@click.argument("tenant")
@click.option("--weight", type=float, help="its share against other tenants' (default 1)")
@click.option("--max-running", type=int, help="its jobs holding a slot at once")
@click.option("--max-priority", type=int, help="the highest priority it may submit at")
@click.option("--key-limit", type=int, help="its concurrency keys' default limit")
@click.option("--reset", multiple=True, type=click.Choice(limits.FIELDS),
              help="back to the deployment's default (repeat)")
def tenant_limits(tenant: str, reset: tuple[str, ...], **given) -> None:
    """Show TENANT's scheduling limits, or set its own (the others stay the defaults)."""
    values = {k: v for k, v in given.items() if v is not None}
    try:
        found = limits.set_tenant_limits(tenant, values, reset)
    except ServiceError as exc:
        raise click.ClickException(f"{exc.message}: {exc.details}") from None
    for name, value in found.public().items():
        click.echo(f"{name}: {value}")


@scheduling_bp.cli.command("pause")
@click.option("--tenant", help="one tenant (left out: every tenant; then --kind is needed)")
@click.option("--kind", help="one kind (left out: all the tenant's work)")
def pause(tenant: str | None, kind: str | None) -> None:
    """Hold back a tenant's jobs, a kind's for every tenant, or one kind of one tenant."""
    if tenant is None and kind is None:
        raise click.ClickException("name a --tenant, a --kind, or both")
    try:
        made = pauses.pause(_tenant_id(tenant), kind)
    except ServiceError as exc:
        raise click.ClickException(f"{exc.message}: {exc.details}") from None
    click.echo("paused" if made else "was paused already")


@scheduling_bp.cli.command("resume")
@click.option("--tenant")
@click.option("--kind")
def resume(tenant: str | None, kind: str | None) -> None:
    """Lift a pause named as `pause` named it."""
    gone = pauses.resume(_tenant_id(tenant), kind)
    click.echo("resumed" if gone else "no such pause")


@scheduling_bp.cli.command("pauses")
def list_pauses() -> None:
    """Every pause in force."""
    for p in pauses.paused():
        click.echo(f"{p['tenant'] or '*'}  {p['kind'] or '*'}  since {p['since']}")


# --- chat providers: `flask --app api providers reseal` ------------------------------------

providers_bp = Blueprint("providers_cli", __name__, cli_group="providers")


@providers_bp.cli.command("reseal")
def reseal() -> None:
    """Re-encrypt every stored provider key with the first of PROVIDER_KEY_SECRETS (after a
    new secret was put first); then the old secrets can be dropped from the list."""
    try:
        count = providers.reseal()
    except providers.KeyUnreadable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"re-encrypted {count} provider key(s) with the first secret")
