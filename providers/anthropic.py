"""Anthropic: `/anthropic/v1/messages` -> https://api.anthropic.com/v1/messages."""

from engine.provider import Auth, ProviderSpec

PROVIDER = ProviderSpec(
    slug="anthropic",
    base_url="https://api.anthropic.com",
    auth=Auth(header="x-api-key", prefix="", also=("authorization",)),
    usage="anthropic",
    compat="anthropic",
)
