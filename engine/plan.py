"""Turning parsed steps into concrete upstream calls (what, where, with which policy)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass

import orjson

from engine.config import GatewaySettings
from engine.errors import INVALID_PROVIDER, GatewayError
from engine.provider import ProviderSpec
from engine.retry import Handling, resolve_handling
from engine.steps import Step, StepConfig
from engine.urls import BaseURL, Origin, check_endpoint, upstream_target

# Never forwarded upstream: hop-by-hop headers, ones the client library sets
# for its own connection, and accept-encoding (the gateway reads SSE events, so
# it asks upstreams for identity encoding).
_DROPPED = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "accept-encoding",
        "proxy-authorization",
        "proxy-authenticate",
    }
)

Resolver = Callable[[str], "tuple[ProviderSpec, BaseURL] | None"]


@dataclass(frozen=True, slots=True)
class StepPlan:
    index: int
    provider: str
    model: str | None
    origin: Origin
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]  # host and content-length are added by the client
    body: bytes
    handling: Handling


def cf_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The `cf-aig-*` entries of a header mapping, with lower-cased names."""
    return {k.lower(): v for k, v in headers.items() if k[:7].lower() == "cf-aig-"}


def upstream_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    out = []
    for name, value in headers.items():
        lower = name.lower()
        if lower in _DROPPED or lower.startswith("cf-aig-"):
            continue
        out.append((lower.encode("latin-1"), value.encode("utf-8")))
    return out


def plan_step(
    step: Step,
    index: int,
    *,
    resolve: Resolver,
    account_id: str,
    request_cf: Mapping[str, str],
    gateway: GatewaySettings,
) -> StepPlan:
    spec, base = _resolve(resolve, step.provider)
    path, query = check_endpoint(step.endpoint)
    if step.query is None and not step.has_query:
        body = b""
    elif isinstance(step.query, str):
        body = step.query.encode("utf-8")
    else:
        body = orjson.dumps(step.query)
    headers = upstream_headers(step.headers)
    if body and not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", b"application/json"))
    return StepPlan(
        index=index,
        provider=spec.slug,
        model=spec.model(step.endpoint, step.query),
        origin=base.origin,
        method=b"POST",
        target=upstream_target(base, spec.route(path), query, account_id),
        headers=headers,
        body=body,
        handling=resolve_handling(step.config, cf_headers(step.headers), request_cf, gateway),
    )


# Bodies larger than this are passed through without looking for their `model`.
MODEL_SNIFF_LIMIT = 256 * 1024


def plan_passthrough(
    provider: str,
    path: str,
    query: str,
    method: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    resolve: Resolver,
    account_id: str,
    request_cf: Mapping[str, str],
    gateway: GatewaySettings,
) -> StepPlan:
    """A provider-native request (§2): method, path, query and body go upstream as sent."""
    spec, base = _resolve(resolve, provider)
    path, _ = check_endpoint(path)
    document = None
    if not spec.model_in_endpoint and body[:1] == b"{" and len(body) <= MODEL_SNIFF_LIMIT:
        with suppress(orjson.JSONDecodeError):
            document = orjson.loads(body)
    return StepPlan(
        index=0,
        provider=spec.slug,
        model=spec.model(path, document),
        origin=base.origin,
        method=method.encode("ascii"),
        target=upstream_target(base, spec.route(path), query, account_id),
        headers=upstream_headers(headers),
        body=body,
        handling=resolve_handling(_NO_CONFIG, {}, request_cf, gateway),
    )


_NO_CONFIG = StepConfig()


def _resolve(resolve: Resolver, provider: str) -> tuple[ProviderSpec, BaseURL]:
    resolved = resolve(provider)
    if resolved is None:
        raise GatewayError(400, INVALID_PROVIDER, f"Invalid provider: {provider!r}")
    return resolved
