"""Workers AI: model paths run under `.../ai/run/`, OpenAI-style `v1/...` under `.../ai/`.

Both `@cf/...` and `run/@cf/...` endpoints are accepted.
"""

from engine.provider import ProviderSpec


def _route(endpoint: str) -> str:
    if endpoint.startswith(("v1/", "run/")):
        return endpoint
    return f"run/{endpoint}"


PROVIDER = ProviderSpec(
    slug="workers-ai",
    base_url="https://api.cloudflare.com/client/v4/accounts/{account_id}/ai",
    route=_route,
    model_in_endpoint=True,
)
