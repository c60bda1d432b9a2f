"""Examples of the chat provider routes: the tenant's vLLM server on its private network (its
`host:port` in HTTP_PRIVATE_HOSTS), started with an API key, and the refusals."""

from __future__ import annotations

from api.examples import at, error, example
from app import providers

PATH = "/api/v1/providers/{name}"
VLLM_URL = "http://10.0.0.5:8000/v1"
VLLM = {"name": "vllm", "base_url": VLLM_URL, "has_key": True, "created_at": at("21.000"),
        "updated_at": at("21.000")}
_NAME = {"vllm": example("The tenant's vLLM server", "vllm")}
NOT_ADMIN = error("FORBIDDEN", "this key lacks the admin scope", {"scope": ["requires admin"]})
NOT_CONFIGURED = error(
    providers.NOT_CONFIGURED,
    "PROVIDER_KEY_SECRETS is not set: this deployment cannot store provider keys",
    {"api_key": ["the operator must set PROVIDER_KEY_SECRETS first"]},
)
BAD_NAME = error("VALIDATION_ERROR", "bad provider name", {"name": [providers.NAME_RULE]})
METADATA_URL = "http://169.254.169.254/latest"
BAD_URL = error("VALIDATION_ERROR", "bad base URL",
                {"base_url": ["169.254.169.254:80: a metadata address, never allowed"]})
CREDENTIALS_URL = "http://admin:hunter2@10.0.0.5:8000/v1"
CREDENTIALS = error("VALIDATION_ERROR", "bad base URL", {"base_url": [
    "no credentials in the URL: the key goes in api_key, where it is encrypted"]})
NOT_A_URL = error("VALIDATION_ERROR", "invalid request",
                  {"base_url": ["an http(s) URL without whitespace"]})
TOO_MANY = error("VALIDATION_ERROR", "too many providers",
                 {"name": [f"a tenant may name at most {providers.MAX_PROVIDERS}"]})
NO_SUCH = error("NOT_FOUND", "no provider named 'gone'")


def chat_providers() -> dict:
    """The examples of the chat provider routes."""
    return {
        ("get", "/api/v1/providers"): {
            "responses": {"200": {"one": example("One provider, with a key",
                                                 {"items": [VLLM]})}},
        },
        ("get", PATH): {
            "parameters": {"name": _NAME},
            "responses": {
                "200": {"vllm": example("Its URL, and that it has a key: never the key", VLLM)},
                "404": {"no_such_provider": example("No provider of that name", NO_SUCH)},
                "422": {"bad_name": example("Not a provider name", BAD_NAME)},
            },
        },
        ("put", PATH): {
            "parameters": {"name": _NAME},
            "request": {
                "with_key": example("A vLLM server started with --api-key",
                                    {"base_url": VLLM_URL, "api_key": "sk-vllm-7f3a9c2e5b1d4f60"}),
                "no_key": example("A server that needs no key",
                                  {"base_url": VLLM_URL}),
            },
            "responses": {
                "200": {"set": example("Stored, the key encrypted", VLLM)},
                "403": {"not_admin": example("The key lacks the admin scope", NOT_ADMIN)},
                "409": {"not_configured": example(
                    "The operator has not set PROVIDER_KEY_SECRETS", NOT_CONFIGURED)},
                "422": {
                    "bad_url": example("An address the workers never call", BAD_URL),
                    "credentials": example("A password in the URL", CREDENTIALS),
                    "not_a_url": example("Not an http(s) URL", NOT_A_URL),
                    "bad_name": example("Not a provider name", BAD_NAME),
                    "too_many": example("The tenant has 100 already", TOO_MANY),
                },
            },
        },
        ("delete", PATH): {
            "parameters": {"name": _NAME},
            "responses": {
                "404": {"no_such_provider": example("No provider of that name", NO_SUCH)},
                "422": {"bad_name": example("Not a provider name", BAD_NAME)},
            },
        },
    }
