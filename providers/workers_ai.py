"""Workers AI: model paths run under `.../ai/run/`, OpenAI-style `v1/...` under `.../ai/`.

Endpoints may be written `@cf/...`, `run/@cf/...` or `v1/...`; a configured
base URL may end in `.../ai` or `.../ai/run` (the form Cloudflare's provider
table gives for model paths). Either way `run/` appears exactly once.
Realtime models (Deepgram on Workers AI) open a WebSocket on their run path:
`/workers-ai?model=@cf/deepgram/nova-3&...` -> `.../ai/run/@cf/deepgram/nova-3?...`.
"""

import dataclasses

from engine.provider import ProviderSpec
from engine.urls import BaseURL


def _route(endpoint: str) -> str:
    if endpoint.startswith(("v1/", "run/")):
        return endpoint
    return f"run/{endpoint}"


def _normalize_base(base: BaseURL) -> BaseURL:
    if base.path.endswith("/ai/run"):
        return dataclasses.replace(base, path=base.path.removesuffix("/run"))
    return base


PROVIDER = ProviderSpec(
    slug="workers-ai",
    base_url="https://api.cloudflare.com/client/v4/accounts/{account_id}/ai",
    route=_route,
    model_in_endpoint=True,
    normalize_base=_normalize_base,
    usage="workers-ai",
    compat="workers-ai",
    realtime_path="run/{model}",
)
