"""Anthropic: `/anthropic/v1/messages` -> https://api.anthropic.com/v1/messages."""

from engine.provider import ProviderSpec

PROVIDER = ProviderSpec(slug="anthropic", base_url="https://api.anthropic.com")
