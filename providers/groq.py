"""Groq's OpenAI-compatible API: `/groq/chat/completions`."""

from engine.provider import ProviderSpec

PROVIDER = ProviderSpec(slug="groq", base_url="https://api.groq.com/openai/v1", compat="openai")
