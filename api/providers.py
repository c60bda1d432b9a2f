"""Chat provider routes: the chat servers a tenant's `chat` jobs name as `provider`; thin
adapters over `app.providers`. Reading takes the jobs scope; a change takes the admin scope.
No answer carries a provider's key: it is written here and read only by the workers."""

from __future__ import annotations

from flask import Response

from api import providers_examples
from api.auth import current_tenant, requires, requires_admin
from api.contract import Blueprint
from api.schemas import ProviderListSchema, ProviderSchema, ProviderSetSchema
from app import providers

bp = Blueprint("providers", __name__, tag="Jobs", area="jobs",
               examples=providers_examples.chat_providers)
bp.before_request(requires("jobs"))


@bp.get("/providers")
@bp.response(200, ProviderListSchema, description="{items}, by name")
def list_providers():
    """Chat providers

    The chat servers this tenant's `chat` jobs may name as `provider`, by name: each one's
    base URL and whether it has a key (`has_key`). The keys themselves are never shown.
    """
    return {"items": providers.all_of(current_tenant())}


@bp.get("/providers/<name>")
@bp.response(200, ProviderSchema, description="the provider")
@bp.refuses(404, 422)
def get_provider(name: str):
    """A chat provider

    Its base URL and whether it has a key; nothing of the key itself.
    """
    return providers.get(current_tenant(), name)


@bp.put("/providers/<name>")
@bp.arguments(ProviderSetSchema)
@bp.response(200, ProviderSchema, description="the provider, created or replaced")
@bp.refuses(409)
def put_provider(req: dict, name: str):
    """Configure a chat provider (admin)

    Creates the provider `name`, or replaces it whole (a replace without `api_key` leaves it
    without a key). The base URL must be http(s) without credentials and pass the workers'
    address checks (public addresses only, or a `host:port` of `HTTP_PRIVATE_HOSTS`); it is
    checked again at every call. The key is encrypted with `PROVIDER_KEY_SECRETS` before it
    is stored (without it: 409) and is never shown again. At most 100 a tenant. Takes the
    admin scope.
    """
    requires_admin()
    return providers.put(current_tenant(), name, req["base_url"], req.get("api_key"))


@bp.delete("/providers/<name>")
@bp.response(204, description="deleted")
@bp.refuses(404, 422)
def delete_provider(name: str):
    """Delete a chat provider (admin)

    Its base URL and key are gone at once: a `chat` job naming it fails from then on
    (`PROVIDER_NOT_FOUND`). Takes the admin scope.
    """
    requires_admin()
    providers.remove(current_tenant(), name)
    return Response(status=204)
