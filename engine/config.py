"""The gateway's configuration: frozen dataclasses built from a TOML mapping.

Validation happens once, at start-up, and every error names the offending key
so a typo in `gateway.toml` is a one-line fix rather than a silent default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine import secrets
from engine.errors import ConfigError
from engine.routes import ID_PATTERN
from engine.secrets import NO_TOKENS, Secret, Tokens
from engine.steps import BACKOFFS, MAX_ATTEMPTS, MAX_RETRY_DELAY_MS
from engine.urls import BaseURL, parse_base_url

MiB = 1024 * 1024
FALLBACK_ON = ("all_non_2xx", "retryable_only")
RATE_LIMIT_FAIL = ("open", "closed")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    http_port: int = 8787
    ws_port: int = 8788
    data_dir: str = "./data"
    # Requests larger than this get 413 before any upstream call.
    max_body_bytes: int = 10 * MiB
    # How long in-flight requests may run on after SIGINT/SIGTERM.
    grace_period: float = 10.0
    # Keep-alive connections kept per upstream origin; also the concurrency cap per origin.
    upstream_max_connections: int = 256
    upstream_connect_timeout: float = 10.0
    # Server-wide cap on time to first byte, even for attempts that "wait without limit".
    upstream_first_byte_timeout: float = 300.0
    access_log: bool = True
    # A WebSocket with no message and no event in flight for this long is closed
    # (Cloudflare's general proxy idle timeout).
    ws_idle_timeout: float = 270.0
    # The largest WebSocket message either way (Universal and realtime); a larger
    # one closes the socket with 1009.
    ws_max_frame_bytes: int = 32 * MiB
    # Live realtime sessions per gateway in this process; one more is closed with 1013.
    realtime_max_sessions: int = 256
    # A realtime session with no message either way for this long is closed, both sides.
    realtime_idle_timeout: float = 270.0
    # Connections the kernel queues for each listener before they are accepted.
    # hypercorn's default of 100 resets some clients of a burst of a few hundred;
    # the kernel caps the value at net.core.somaxconn.
    backlog: int = 4096
    # Shared cache and rate-limit state; None keeps both in this process's memory.
    redis_url: str | None = None
    # Request heads past these get 431 with the envelope (hypercorn's own cap sits above).
    max_header_count: int = 100
    max_header_bytes: int = 32 * 1024
    # Steps one Universal request (or WebSocket event) may hold.
    max_steps: int = 20
    # Requests in flight (HTTP) and open sockets (WebSocket) per client address.
    max_connections_per_ip: int = 1000


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int
    interval: int
    technique: str = "fixed"


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Per-gateway settings: the lowest level of the header hierarchy."""

    tokens: Tokens = NO_TOKENS  # `token` and `tokens`; empty: not authenticated
    cache_ttl: int = 0
    rate_limit: RateLimit | None = None
    collect_logs: bool = True
    request_timeout: int | None = None  # ms to first byte
    retry_max_attempts: int = 1
    retry_delay: int = 0  # ms
    retry_backoff: str = "constant"
    fallback_on: str = "all_non_2xx"
    # Redis unreachable: "open" serves the request, "closed" refuses it (429).
    rate_limit_fail: str = "open"
    # Requests in flight through this gateway at once; one more gets 429.
    max_concurrent: int = 1024
    # Stored provider keys: provider -> alias -> key (`default` when no alias is asked for).
    keys: Mapping[str, Mapping[str, Secret]] = field(default_factory=dict, hash=False)
    # Refuse requests that bring no provider key when no stored key applies.
    byok_only: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    # provider slug -> upstream base URL overriding the built-in one
    providers: Mapping[str, BaseURL] = field(default_factory=dict)
    gateways: Mapping[str, GatewaySettings] = field(default_factory=dict)

    def gateway(self, gateway_id: str) -> GatewaySettings:
        return self.gateways.get(gateway_id, DEFAULT_GATEWAY)


DEFAULT_GATEWAY = GatewaySettings()


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a table")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], key: str) -> None:
    for name in table:
        if name not in allowed:
            where = f"{key}.{name}" if key else name
            raise ConfigError(f"{where}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _get(table: Mapping[str, Any], name: str, kind: type | tuple[type, ...], key: str) -> Any:
    value = table[name]
    # bool is an int subclass; never accept true where a number is meant.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{key}.{name}: expected {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"{key}.{name}: expected {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}.get(
            k, k.__name__
        )
        for k in kinds
    )


def _in_range(value: float, low: float, high: float, where: str) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{where}: must be between {low} and {high}, got {value}")


def _server(table: Mapping[str, Any]) -> ServerConfig:
    key = "server"
    kinds: dict[str, type | tuple[type, ...]] = {
        "host": str,
        "http_port": int,
        "ws_port": int,
        "data_dir": str,
        "max_body_bytes": int,
        "grace_period": (int, float),
        "upstream_max_connections": int,
        "upstream_connect_timeout": (int, float),
        "upstream_first_byte_timeout": (int, float),
        "access_log": bool,
        "ws_idle_timeout": (int, float),
        "ws_max_frame_bytes": int,
        "realtime_max_sessions": int,
        "realtime_idle_timeout": (int, float),
        "backlog": int,
        "redis_url": str,
        "max_header_count": int,
        "max_header_bytes": int,
        "max_steps": int,
        "max_connections_per_ip": int,
    }
    _check_keys(table, set(kinds), key)
    values = {name: _get(table, name, kinds[name], key) for name in table}
    for port in ("http_port", "ws_port"):
        if port in values:
            _in_range(values[port], 0, 65535, f"{key}.{port}")
    for name in (
        "max_body_bytes",
        "upstream_max_connections",
        "backlog",
        "max_header_count",
        "max_header_bytes",
        "max_steps",
        "max_connections_per_ip",
        "ws_max_frame_bytes",
        "realtime_max_sessions",
    ):
        if name in values and values[name] < 1:
            raise ConfigError(f"{key}.{name}: must be at least 1")
    for name in (
        "grace_period",
        "upstream_connect_timeout",
        "upstream_first_byte_timeout",
        "ws_idle_timeout",
        "realtime_idle_timeout",
    ):
        if name in values and values[name] <= 0:
            raise ConfigError(f"{key}.{name}: must be a positive number of seconds")
    url = values.get("redis_url")
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{key}.redis_url: must start with redis://, rediss:// or unix://")
    return ServerConfig(**values)


def _rate_limit(value: Any, key: str) -> RateLimit:
    table = _table(value, key)
    _check_keys(table, {"limit", "interval", "technique"}, key)
    for name in ("limit", "interval"):
        if name not in table:
            raise ConfigError(f"{key}.{name}: required")
        if _get(table, name, int, key) < 1:
            raise ConfigError(f"{key}.{name}: must be at least 1")
    technique = _get(table, "technique", str, key) if "technique" in table else "fixed"
    if technique not in ("fixed", "sliding"):
        raise ConfigError(f"{key}.technique: must be 'fixed' or 'sliding', got {technique!r}")
    return RateLimit(table["limit"], table["interval"], technique)


def _gateway(
    name: str, value: Any, environ: Mapping[str, str], is_provider: Callable[[str], bool]
) -> GatewaySettings:
    key = f"gateways.{name}"
    table = _table(value, key)
    kinds: dict[str, type | tuple[type, ...]] = {
        "cache_ttl": int,
        "collect_logs": bool,
        "request_timeout": int,
        "retry_max_attempts": int,
        "retry_delay": int,
        "retry_backoff": str,
        "fallback_on": str,
        "rate_limit_fail": str,
        "max_concurrent": int,
        "byok_only": bool,
    }
    _check_keys(table, {*kinds, "rate_limit", "token", "tokens", "keys"}, key)
    values: dict[str, Any] = {n: _get(table, n, kinds[n], key) for n in table if n in kinds}
    if "rate_limit" in table:
        values["rate_limit"] = _rate_limit(table["rate_limit"], f"{key}.rate_limit")
    values["tokens"] = secrets.tokens(table, key, environ)
    if "keys" in table:
        if not values["tokens"]:
            raise ConfigError(f"{key}.keys: stored keys need an authenticated gateway (set token)")
        values["keys"] = secrets.stored_keys(table["keys"], f"{key}.keys", environ, is_provider)
    checks: dict[str, Callable[[Any], bool]] = {
        "cache_ttl": lambda v: 0 <= v <= 2_592_000,
        "request_timeout": lambda v: v >= 0,
        "retry_max_attempts": lambda v: 1 <= v <= MAX_ATTEMPTS,
        "retry_delay": lambda v: 0 <= v <= MAX_RETRY_DELAY_MS,
        "retry_backoff": lambda v: v in BACKOFFS,
        "fallback_on": lambda v: v in FALLBACK_ON,
        "rate_limit_fail": lambda v: v in RATE_LIMIT_FAIL,
        "max_concurrent": lambda v: v >= 1,
    }
    hints = {
        "cache_ttl": "must be 0..2592000 seconds",
        "request_timeout": "must be >= 0 ms",
        "retry_max_attempts": "must be 1..5",
        "retry_delay": "must be 0..60000 ms",
        "retry_backoff": f"must be one of {', '.join(BACKOFFS)}",
        "fallback_on": f"must be one of {', '.join(FALLBACK_ON)}",
        "rate_limit_fail": f"must be one of {', '.join(RATE_LIMIT_FAIL)}",
        "max_concurrent": "must be at least 1",
    }
    for n, check in checks.items():
        if n in values and not check(values[n]):
            raise ConfigError(f"{key}.{n}: {hints[n]}, got {values[n]!r}")
    return GatewaySettings(**values)


def load_config(
    data: Mapping[str, Any],
    known_providers: Callable[[str], bool],
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build a Config from a parsed TOML mapping.

    `known_providers` tells whether a slug names a built-in provider; a custom
    provider (`custom-{slug}`) must bring its own `base_url`. `{ env = "VAR" }`
    values are read from `environ` (the process environment by default).
    """
    environ = os.environ if environ is None else environ
    _check_keys(data, {"server", "providers", "gateways"}, "")
    server = _server(_table(data["server"], "server")) if "server" in data else ServerConfig()
    providers: dict[str, BaseURL] = {}
    for slug, value in _table(data.get("providers", {}), "providers").items():
        key = f"providers.{slug}"
        table = _table(value, key)
        _check_keys(table, {"base_url"}, key)
        custom = slug.startswith("custom-") and len(slug) > len("custom-")
        if not custom and not known_providers(slug):
            raise ConfigError(f"{key}: unknown provider (custom providers are named custom-<slug>)")
        if "base_url" not in table:
            if custom:
                raise ConfigError(f"{key}.base_url: required for a custom provider")
            continue
        try:
            providers[slug] = parse_base_url(_get(table, "base_url", str, key))
        except ValueError as exc:
            raise ConfigError(f"{key}.base_url: {exc}") from None

    def is_provider(slug: str) -> bool:
        return known_providers(slug) or slug in providers

    gateways = {
        name: _gateway(name, value, environ, is_provider)
        for name, value in _table(data.get("gateways", {}), "gateways").items()
    }
    for name in gateways:
        if not ID_PATTERN.fullmatch(name):
            raise ConfigError(f"gateways.{name}: a gateway id is 1-64 of a-z, 0-9, '_' and '-'")
    return Config(server=server, providers=providers, gateways=gateways)
