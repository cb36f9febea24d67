"""OpenAI: `/openai/chat/completions` -> https://api.openai.com/v1/chat/completions."""

from engine.provider import ProviderSpec

PROVIDER = ProviderSpec(
    slug="openai",
    base_url="https://api.openai.com/v1",
    compat="openai",
    realtime_path="realtime",
)
