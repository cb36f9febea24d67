"""Provider registry: one small declarative module per provider family.

Adding a provider is a new module with a `PROVIDER = ProviderSpec(...)` and a
line in `BUILT_IN`; nothing else in the gateway names providers.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.provider import ProviderSpec
from engine.urls import BaseURL, parse_base_url
from providers import (
    anthropic,
    cartesia,
    deepgram,
    elevenlabs,
    fal,
    google_ai_studio,
    groq,
    mistral,
    openai,
    workers_ai,
)

BUILT_IN: dict[str, ProviderSpec] = {
    module.PROVIDER.slug: module.PROVIDER
    for module in (
        workers_ai,
        openai,
        anthropic,
        groq,
        mistral,
        google_ai_studio,
        cartesia,
        elevenlabs,
        fal,
        deepgram,
    )
}


class Registry:
    """Resolves a provider slug to its spec and effective base URL.

    Built-in base URLs may be overridden by configuration; `custom-{slug}`
    providers exist only when configured.
    """

    def __init__(self, overrides: Mapping[str, BaseURL] | None = None) -> None:
        self._resolved: dict[str, tuple[ProviderSpec, BaseURL]] = {}
        for slug, spec in BUILT_IN.items():
            base = (overrides or {}).get(slug) or parse_base_url(spec.base_url)
            self._resolved[slug] = (spec, spec.normalize_base(base))
            for alias in spec.aliases:
                self._resolved.setdefault(alias, self._resolved[slug])
        for slug, base in (overrides or {}).items():
            if slug.startswith("custom-"):
                spec = ProviderSpec(
                    slug=slug,
                    base_url=str(base),
                    compat="openai",
                    compat_path="v1/chat/completions",
                )
                self._resolved[slug] = (spec, base)

    def resolve(self, slug: str) -> tuple[ProviderSpec, BaseURL] | None:
        return self._resolved.get(slug) or self._resolved.get(slug.lower())

    def __contains__(self, slug: str) -> bool:
        return self.resolve(slug) is not None


def is_built_in(slug: str) -> bool:
    return slug in BUILT_IN
