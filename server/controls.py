"""The gateway checks between authentication and the cache, and the connection caps.

In request order: the gateway's rate limit (429 / 2003 with Retry-After), then
its cap on requests in flight (`max_concurrent`, 429 / 2003). Both run for
every surface before a request is planned, so a cache hit counts like any
other request. The per-address caps (`max_connections_per_ip`) apply when a
connection's request or WebSocket handshake arrives.

Counters for /metrics, all plain attributes:
  `rate_limited[gateway]`   requests refused by the gateway's rate limit
  `concurrency_refused[gateway]`  requests refused by `max_concurrent`
  `in_flight[gateway]`      requests running now
  `http_per_ip.refused`, `ws_per_ip.refused`  refused by the per-address caps
  `redis_failures`          rate-limit checks that could not reach Redis
"""

from __future__ import annotations

import logging
from types import TracebackType

from engine.config import Config, GatewaySettings
from engine.errors import RATE_LIMITED, GatewayError
from engine.ratelimit import Decision, rate_limited
from stores.ratelimit import MemoryRateLimits, RateLimits, RateLimitUnavailable, RedisRateLimits
from stores.redis import Redis, RedisHealth

log = logging.getLogger("gateway.controls")
# What a client refused under rate_limit_fail = "closed" is told to wait, in seconds.
CLOSED_RETRY_AFTER = 1


class AddressCap:
    """Connections (or requests in flight) per client address, up to `limit` each."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self.open: dict[str, int] = {}
        self.refused = 0

    def enter(self, address: str) -> bool:
        count = self.open.get(address, 0)
        if count >= self.limit:
            self.refused += 1
            return False
        self.open[address] = count + 1
        return True

    def leave(self, address: str) -> None:
        count = self.open[address] - 1
        if count:
            self.open[address] = count
        else:
            del self.open[address]  # the table holds only addresses with something open

    def error(self) -> GatewayError:
        error = GatewayError(
            429, RATE_LIMITED, f"Too many {self.what} from this address (limit {self.limit})"
        )
        error.headers = ((b"retry-after", b"1"),)
        return error


class InFlight:
    """Holds one of a gateway's `max_concurrent` slots while a request runs."""

    __slots__ = ("controls", "gateway_id")

    def __init__(self, controls: Controls, gateway_id: str) -> None:
        self.controls = controls
        self.gateway_id = gateway_id

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        counts = self.controls.in_flight
        counts[self.gateway_id] -= 1


class Controls:
    """Rate limits, concurrency caps and per-address caps, shared by every surface."""

    def __init__(self, config: Config, limits: RateLimits, shared: bool = False) -> None:
        self.limits = limits
        # Only a shared (Redis) store can be out of reach.
        self.health = RedisHealth("rate limiting") if shared else None
        self.rate_limited: dict[str, int] = {}
        self.concurrency_refused: dict[str, int] = {}
        self.in_flight: dict[str, int] = {}
        cap = config.server.max_connections_per_ip
        self.http_per_ip = AddressCap(cap, "requests in flight")
        self.ws_per_ip = AddressCap(cap, "WebSocket connections")

    @classmethod
    def build(cls, config: Config, redis: Redis | None) -> Controls:
        """Redis-backed counters when `[server] redis_url` is set, else in memory."""
        if redis is None:
            return cls(config, MemoryRateLimits())
        return cls(config, RedisRateLimits(redis), shared=True)

    @property
    def redis_failures(self) -> int:
        return self.health.failures if self.health is not None else 0

    async def admit(self, gateway_id: str, gateway: GatewaySettings) -> InFlight:
        """Check the rate limit and take a concurrency slot; use the result in a `with`.

        Raises:
            GatewayError: 429 / 2003, rate limited or at `max_concurrent`.
        """
        await self.check_rate(gateway_id, gateway)
        count = self.in_flight.get(gateway_id, 0)
        if count >= gateway.max_concurrent:
            self.concurrency_refused[gateway_id] = self.concurrency_refused.get(gateway_id, 0) + 1
            error = GatewayError(
                429,
                RATE_LIMITED,
                f"Too many concurrent requests (max_concurrent {gateway.max_concurrent})",
            )
            error.headers = ((b"retry-after", b"1"),)
            raise error
        self.in_flight[gateway_id] = count + 1
        return InFlight(self, gateway_id)

    async def check_rate(self, gateway_id: str, gateway: GatewaySettings) -> None:
        """Count one request (or realtime session start) against the gateway's rate limit.

        Raises:
            GatewayError: 429 / 2003 with Retry-After when over the limit.
        """
        rule = gateway.rate_limit
        if rule is None:
            return
        try:
            decision = await self.limits.hit(gateway_id, rule)
        except RateLimitUnavailable as exc:
            if self.health is not None:
                self.health.failed(exc)
            if gateway.rate_limit_fail == "closed":
                decision = Decision(False, CLOSED_RETRY_AFTER)
            else:
                return
        else:
            if self.health is not None and self.health.down:
                self.health.ok()
        if not decision.allowed:
            self.rate_limited[gateway_id] = self.rate_limited.get(gateway_id, 0) + 1
            raise rate_limited(decision)
