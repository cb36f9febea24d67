"""Realtime WebSocket passthrough, the pure part: where a session goes and with what.

A client opens `/v1/{account}/{gateway}/{provider}[/{path}][?query]` on the
WebSocket listener; the gateway opens the provider's own WebSocket and relays
frames both ways. This module decides the upstream URL, the handshake headers
and subprotocols, and how a close on one side is told to the other. The relay
itself (trio, sockets) is `server/realtime.py`.

Rules:
- The upstream is always the provider's configured origin: the path and query
  pass `check_endpoint`, like every other gateway path (no SSRF).
- `cf-aig-*` headers and `cf-aig-authorization.*` subprotocols never go upstream.
- A credential carried the browser way (a subprotocol or a query parameter the
  provider module names) becomes the provider's own auth header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from engine.auth import AUTH_SUBPROTOCOL
from engine.errors import bad_request
from engine.keys import settle_credentials
from engine.plan import Context, resolve_provider
from engine.provider import ProviderSpec
from engine.urls import BaseURL, Origin, check_endpoint, parse_base_url, upstream_target

# Handshake headers the gateway never forwards: the WebSocket handshake's own
# (trio-websocket writes fresh ones), hop-by-hop headers, and what a browser
# sends for the gateway's origin (its cookies and Origin are not the provider's).
_NOT_FORWARDED = frozenset(
    {
        b"host",
        b"connection",
        b"upgrade",
        b"content-length",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"accept-encoding",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
        b"origin",
        b"cookie",
    }
)
_MODEL = "{model}"
_SCHEMES = {"http": "ws", "https": "wss"}
# Close codes that describe a connection rather than travel in a close frame.
NO_STATUS, ABNORMAL = 1005, 1006
GOING_AWAY, TOO_BIG, INTERNAL_ERROR, TRY_AGAIN_LATER, BAD_GATEWAY = 1001, 1009, 1011, 1013, 1014
# trio-websocket's reason when a message passes `max_message_size`.
_OVERSIZE = "Exceeded maximum message size"


@dataclass(frozen=True, slots=True)
class RealtimeRequest:
    """A realtime handshake as the client sent it."""

    provider: str
    path: str  # below /{provider}/, without the leading '/'
    query: str  # raw, without '?'
    headers: Sequence[tuple[bytes, bytes]]  # lower-case names
    subprotocols: Sequence[str]


@dataclass(frozen=True, slots=True)
class RealtimePlan:
    """Where a session goes upstream, and how it presents itself there."""

    provider: str
    spec: ProviderSpec
    origin: Origin
    target: str  # path and query sent upstream; may hold a credential, never logged
    headers: list[tuple[bytes, bytes]]
    subprotocols: list[str]
    echo: str | None  # the subprotocol the client gets back: the first it offered
    model: str | None

    @property
    def secure(self) -> bool:
        return self.origin.scheme == "https"

    @property
    def where(self) -> str:
        """The upstream URL without its query, for logs and close reasons."""
        scheme = _SCHEMES[self.origin.scheme]
        return f"{scheme}://{self.origin.host_header}{self.target.partition('?')[0]}"


@dataclass(slots=True)
class Flow:
    """Frames and bytes (UTF-8 bytes for text) relayed in one direction."""

    frames: int = 0
    bytes: int = 0


@dataclass(slots=True)
class RealtimeSession:
    """One realtime session: what the session-level features see and complete.

    `headers` are the upstream handshake headers; a feature may add one (a stored
    key) before the upstream is opened. Once the session ends, the record holds
    its duration, the traffic each way and how each side closed.
    """

    log_id: str
    ctx: Context
    plan: RealtimePlan
    path: str  # the client's path, without the query
    started: float  # wall-clock seconds
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    sent: Flow = field(default_factory=Flow)  # client -> upstream
    received: Flow = field(default_factory=Flow)  # upstream -> client
    client_close: tuple[int, str | None] | None = None  # as the client saw it
    upstream_close: tuple[int, str | None] | None = None  # as the upstream saw it
    # client | upstream | idle | shutdown | limit | rejected | refused | unreachable | error
    ended_by: str = ""
    duration: float = 0.0


def plan_realtime(request: RealtimeRequest, ctx: Context) -> RealtimePlan:
    """The upstream side of a realtime session; GatewayError (400) for a bad request."""
    spec, base = resolve_provider(ctx.resolve, request.provider)
    base = realtime_base(spec, base)
    path, query, model = request.path, request.query, None
    if not path and spec.realtime_path:
        path = spec.realtime_path
        if _MODEL in path:
            model, query = take_param(query, "model")
            if not model:
                raise bad_request(
                    f"{spec.slug} realtime needs a model: /{request.provider}?model=... "
                    f"or /{request.provider}/{{model}}"
                )
            path = path.replace(_MODEL, model)
    path, query = check_endpoint(f"{path}?{query}" if query else path)
    headers = [
        (k, v) for k, v in request.headers if k not in _NOT_FORWARDED and k[:7] != b"cf-aig-"
    ]
    subprotocols = []
    for proto in request.subprotocols:
        prefix = spec.realtime_subprotocol
        if proto.startswith(AUTH_SUBPROTOCOL):
            continue
        if prefix and proto.startswith(prefix) and len(proto) > len(prefix):
            _set_credential(headers, spec, proto[len(prefix) :])
        else:
            subprotocols.append(proto)
    if spec.realtime_query_key:
        key, query = take_param(query, spec.realtime_query_key)
        if key:
            _set_credential(headers, spec, key)
    route = spec.route(path)
    raw_target = upstream_target(base, route, query, ctx.account_id)
    target = raw_target.decode("ascii")
    # Stored keys, aliases and byok_only apply to sessions as to requests.
    request_line = (b"GET", base.origin, raw_target, b"")
    headers = settle_credentials(headers, spec, ctx.gateway, ctx.options.byok_alias, request_line)
    if model is None:
        model = spec.model(route, None) if spec.model_in_endpoint else _param(query, "model")
    return RealtimePlan(
        provider=spec.slug,
        spec=spec,
        origin=base.origin,
        target=target,
        headers=headers,
        subprotocols=subprotocols,
        echo=request.subprotocols[0] if request.subprotocols else None,
        model=model,
    )


def realtime_base(spec: ProviderSpec, base: BaseURL) -> BaseURL:
    """The provider's realtime base: its own realtime host unless `base_url` was configured."""
    if spec.realtime_base_url is None:
        return base
    if base != spec.normalize_base(parse_base_url(spec.base_url)):
        return base  # configured: the user's base wins
    return parse_base_url(spec.realtime_base_url)


def take_param(query: str, name: str) -> tuple[str | None, str]:
    """Remove `name` from a raw query string: (its decoded value, the rest as sent)."""
    value, kept = None, []
    for pair in query.split("&") if query else ():
        key, _, raw = pair.partition("=")
        if unquote_plus(key) == name:
            value = unquote_plus(raw) if value is None else value
        else:
            kept.append(pair)
    return value, "&".join(kept)


def _param(query: str, name: str) -> str | None:
    return take_param(query, name)[0]


def _set_credential(headers: list[tuple[bytes, bytes]], spec: ProviderSpec, key: str) -> None:
    """Send `key` in the provider's auth header, replacing one the client sent."""
    if not (key.isascii() and key.isprintable()):
        raise bad_request("The provider credential is not a valid header value")
    name, value = spec.auth.inject(key)
    headers[:] = [(k, v) for k, v in headers if k != name]
    headers.append((name, value))


def relay_close(code: int, reason: str | None, by: str, limit: int) -> tuple[int, str | None]:
    """The close frame the other side gets when `by` ("client" or "upstream") closed.

    The code and reason travel unchanged, except for what cannot be sent: no
    status (1005) becomes 1000; a vanished peer (1006) becomes 1001 for the
    upstream ("the client went away") and 1014 for the client ("bad gateway");
    a message over the gateway's size limit says so.
    """
    if code == NO_STATUS:
        return 1000, None
    if code == ABNORMAL:
        if by == "client":
            return GOING_AWAY, "client went away"
        return BAD_GATEWAY, "upstream connection lost"
    if code == TOO_BIG and (reason or "").startswith(_OVERSIZE):
        return TOO_BIG, f"{by} message larger than ws_max_frame_bytes ({limit} bytes)"
    return code, reason


def refused(status: int) -> tuple[int, str]:
    """The client's close when the upstream refused the handshake with HTTP `status`.

    4000 + status (4401, 4403, 4404, 4429, ...) so a program can tell a bad key
    from a rate limit without reading the reason.
    """
    code = 4000 + status if 400 <= status <= 599 else BAD_GATEWAY
    return code, f"upstream refused the WebSocket handshake: HTTP {status}"
