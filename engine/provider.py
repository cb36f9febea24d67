"""The declarative shape every provider module fills in (see `providers/`).

Everything the gateway's features need to know about a provider lives in its
`ProviderSpec`: where it is, how it takes a credential (stored keys inject it,
the cache hashes it), how to read the model and token usage (logs), which
OpenAI-compatible translation `/compat` uses, and its realtime WebSocket path.
No other module branches on a provider's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from engine.urls import BaseURL


def _same(endpoint: str) -> str:
    return endpoint


def _same_base(base: BaseURL) -> BaseURL:
    return base


# How a provider with structured, per-request-signed keys (AWS SigV4) applies a
# stored key: (key fields, method, host, target, headers, body) -> the headers to send.
Signer = Callable[
    [Mapping[str, str], bytes, str, bytes, list[tuple[bytes, bytes]], bytes],
    list[tuple[bytes, bytes]],
]


@dataclass(frozen=True, slots=True)
class Auth:
    """How a provider takes its credential.

    Attributes:
        header: the header a stored key is injected into (lower-case).
        prefix: written before the key in that header ("Bearer ", "Token ", "Key ", "").
        also: other headers a client may carry the credential in; read, never injected.
        query: a query parameter that may carry it (Google's `key`).
        sign: for structured stored keys, signs the request instead of `inject`.
    """

    header: str = "authorization"
    prefix: str = "Bearer "
    also: tuple[str, ...] = ()
    query: str | None = None
    sign: Signer | None = None

    def credential(self, headers: Mapping[str, str]) -> str | None:
        """The credential a request carries (header names lower-cased), prefix removed."""
        for name in (self.header, *self.also):
            value = headers.get(name)
            if value:
                for prefix in (self.prefix, "Bearer ", "bearer "):
                    if prefix and value.startswith(prefix):
                        return value[len(prefix) :].strip()
                return value.strip()
        return None

    def inject(self, key: str) -> tuple[bytes, bytes]:
        """The header that carries a stored key upstream."""
        return self.header.encode("latin-1"), f"{self.prefix}{key}".encode("latin-1")


BEARER = Auth()


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
        auth: how the provider takes a credential.
        usage: the token-usage format of its responses, a family name that
            `engine.usage` knows ("openai", "anthropic", "workers-ai", ...).
        compat: how `/compat/chat/completions` reaches it: None (not offered),
            "openai" (the body goes as is, `model` rewritten), or a translation
            family of `engine.compat` ("anthropic", "google", ...).
        compat_path: the endpoint compat calls for "openai"-style providers.
        realtime_path: the provider's realtime WebSocket path below its base,
            used when a realtime client names no path; None when it has none.
            `{model}` in it is taken from the client's `model` query parameter
            (Workers AI: `/workers-ai?model=@cf/...` -> `run/@cf/...`).
        realtime_base_url: where its realtime WebSockets live when that is not
            the HTTP base (Fal: `ws.fal.run`); a configured `base_url` wins.
        realtime_subprotocol: a WebSocket subprotocol prefix that carries the
            credential in browsers (`xi-api-key.`); such an entry is turned into
            the provider's auth header (`auth.inject`) instead of going upstream.
        realtime_query_key: a query parameter of realtime URLs that carries the
            credential (Cloudflare's `google?api_key=`); it is sent upstream as
            the provider's auth header instead.
        aliases: other slugs that name this provider (Cloudflare's realtime
            `google` for `google-ai-studio`, compat's `perplexity`).
    """

    slug: str
    base_url: str
    route: Callable[[str], str] = _same
    model_in_endpoint: bool = False
    normalize_base: Callable[[BaseURL], BaseURL] = _same_base
    auth: Auth = BEARER
    usage: str = "openai"
    compat: str | None = None
    compat_path: str = "chat/completions"
    realtime_path: str | None = None
    realtime_base_url: str | None = None
    realtime_subprotocol: str | None = None
    realtime_query_key: str | None = None
    aliases: tuple[str, ...] = field(default=())

    def model(self, endpoint: str, query: object) -> str | None:
        if self.model_in_endpoint:
            return endpoint.removeprefix("run/").partition("?")[0] or None
        if isinstance(query, dict):
            model = query.get("model")
            if isinstance(model, str):
                return model
        return None
