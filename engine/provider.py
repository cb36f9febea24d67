"""The declarative shape every provider module fills in (see `providers/`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.urls import BaseURL


def _same(endpoint: str) -> str:
    return endpoint


def _same_base(base: BaseURL) -> BaseURL:
    return base


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What the gateway needs to know to call one provider family.

    Attributes:
        slug: the provider's name in gateway URLs and Universal steps.
        base_url: built-in upstream base; `[providers.SLUG] base_url` overrides it.
            `{account_id}` is filled from the request path.
        route: maps a step endpoint to the path below the base (Workers AI adds `run/`).
        model_in_endpoint: the model is named by the endpoint, not by the body's `model`.
        normalize_base: brings a configured base URL to the form `route` expects,
            so each documented spelling of a provider's base works.
    """

    slug: str
    base_url: str
    route: Callable[[str], str] = _same
    model_in_endpoint: bool = False
    normalize_base: Callable[[BaseURL], BaseURL] = _same_base

    def model(self, endpoint: str, query: object) -> str | None:
        if self.model_in_endpoint:
            return endpoint.removeprefix("run/").partition("?")[0] or None
        if isinstance(query, dict):
            model = query.get("model")
            if isinstance(model, str):
                return model
        return None
