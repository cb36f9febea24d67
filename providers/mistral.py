"""Mistral: `/mistral/v1/chat/completions` -> https://api.mistral.ai/v1/chat/completions."""

from engine.provider import ProviderSpec

PROVIDER = ProviderSpec(
    slug="mistral",
    base_url="https://api.mistral.ai",
    compat="openai",
    compat_path="v1/chat/completions",
)
