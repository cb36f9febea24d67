"""Turning parsed steps into concrete upstream calls (what, where, with which policy)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from engine import jsondoc
from engine.config import GatewaySettings
from engine.errors import INVALID_PROVIDER, GatewayError
from engine.keys import settle_credentials
from engine.options import NO_OPTIONS, Options, parse_options
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
    # host and content-length are added by the client; never in a repr (credentials)
    headers: list[tuple[bytes, bytes]] = field(repr=False)
    body: bytes = field(repr=False)
    handling: Handling
    spec: ProviderSpec
    endpoint: str  # the step's endpoint, or the path below the provider (native)
    options: Options = NO_OPTIONS  # step over request options; gateway settings apply below
    warnings: tuple[str, ...] = ()  # option headers of this step that were ignored


def cf_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The `cf-aig-*` entries of a header mapping, with lower-cased names."""
    return {k.lower(): v for k, v in headers.items() if k[:7].lower() == "cf-aig-"}


def raw_cf_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The same, from a listener's raw header pairs, decoding only the ones kept."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in headers
        if name[:7].lower() == b"cf-aig-"
    }


def upstream_headers(
    headers: Mapping[str, str], encoding: str = "utf-8"
) -> list[tuple[bytes, bytes]]:
    """Headers to forward, as bytes.

    `encoding` is utf-8 for values written in JSON (Universal steps) and latin-1
    for values that arrived as HTTP bytes, so those go upstream byte for byte.
    """
    out = []
    for name, value in headers.items():
        lower = name.lower()
        if lower in _DROPPED or lower.startswith("cf-aig-"):
            continue
        out.append((lower.encode("latin-1"), value.encode(encoding)))
    return out


@dataclass(frozen=True, slots=True)
class Context:
    """What every step of one request is planned against."""

    resolve: Resolver
    account_id: str
    request_cf: Mapping[str, str]  # the request's own cf-aig-* headers, lower-cased
    gateway: GatewaySettings
    gateway_id: str = ""
    request_type: str = "universal"  # universal | provider | compat | websocket | run
    options: Options = NO_OPTIONS  # the request-level options, parsed from request_cf
    warnings: tuple[str, ...] = ()  # request-level option headers that were ignored

    @classmethod
    def build(
        cls,
        resolve: Resolver,
        account_id: str,
        request_cf: Mapping[str, str],
        gateway: GatewaySettings,
        gateway_id: str = "",
        request_type: str = "universal",
    ) -> Context:
        options, warnings = parse_options(request_cf)
        return cls(
            resolve,
            account_id,
            request_cf,
            gateway,
            gateway_id,
            request_type,
            options,
            tuple(warnings),
        )


@dataclass(frozen=True, slots=True)
class NativeRequest:
    """A provider-native request as the client sent it, below `/{provider}/`."""

    provider: str
    path: str
    query: str
    method: str
    headers: Mapping[str, str]
    body: bytes


def plan_step(step: Step, index: int, ctx: Context) -> StepPlan:
    spec, base = resolve_provider(ctx.resolve, step.provider)
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
    step_cf = cf_headers(step.headers)
    step_options, warnings = parse_options(step_cf)
    options = step_options.over(ctx.options)
    target = upstream_target(base, spec.route(path), query, ctx.account_id)
    request = (b"POST", base.origin, target, body)
    return StepPlan(
        index=index,
        provider=spec.slug,
        model=spec.model(step.endpoint, step.query),
        origin=base.origin,
        method=b"POST",
        target=target,
        headers=settle_credentials(headers, spec, ctx.gateway, options.byok_alias, request),
        body=body,
        handling=resolve_handling(step.config, step_cf, ctx.request_cf, ctx.gateway),
        spec=spec,
        endpoint=step.endpoint,
        options=options,
        warnings=tuple(warnings),
    )


# Bodies larger than this are passed through without looking for their `model`.
MODEL_SNIFF_LIMIT = 256 * 1024
_NO_CONFIG = StepConfig()


def plan_native(request: NativeRequest, ctx: Context) -> StepPlan:
    """Method, path, query and body go upstream as sent; retries come from the request."""
    spec, base = resolve_provider(ctx.resolve, request.provider)
    path, _ = check_endpoint(request.path)
    body = request.body
    document = None
    if not spec.model_in_endpoint and body[:1] == b"{" and len(body) <= MODEL_SNIFF_LIMIT:
        document = jsondoc.peek(body)
    method = request.method.encode("ascii")
    target = upstream_target(base, spec.route(path), request.query, ctx.account_id)
    headers = settle_credentials(
        upstream_headers(request.headers, "latin-1"),
        spec,
        ctx.gateway,
        ctx.options.byok_alias,
        (method, base.origin, target, body),
    )
    return StepPlan(
        index=0,
        provider=spec.slug,
        model=spec.model(path, document),
        origin=base.origin,
        method=method,
        target=target,
        headers=headers,
        body=body,
        handling=resolve_handling(_NO_CONFIG, {}, ctx.request_cf, ctx.gateway),
        spec=spec,
        endpoint=path,
        options=ctx.options,
    )


def resolve_provider(resolve: Resolver, provider: str) -> tuple[ProviderSpec, BaseURL]:
    resolved = resolve(provider)
    if resolved is None:
        raise GatewayError(400, INVALID_PROVIDER, f"Invalid provider: {provider!r}")
    return resolved
