"""The process's one Redis client, shared by the cache and the rate limiter.

coredis runs its pool in a task group of its own, entered here as an async
context manager, so the pool lives in the root nursery's scope and closes with
it. Redis is optional: without `[server] redis_url` nothing here runs.

A Redis that is down must never fail or stall a request: every call is bounded
by a short timeout, and `RedisHealth` reports the outage once (and the
recovery once) instead of once per request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import coredis
import coredis.retry

log = logging.getLogger("gateway.redis")

# Seconds a Redis call may take before the caller goes on without it.
REDIS_TIMEOUT = 0.25
# Exceptions that mean "Redis is not available right now".
REDIS_ERRORS = (coredis.exceptions.RedisError, OSError, TimeoutError)

Redis = coredis.Redis[bytes]


@asynccontextmanager
async def open_redis(url: str | None) -> AsyncIterator[Redis | None]:
    """A connected-on-demand client for `url`, or None when Redis is not configured."""
    if url is None:
        yield None
        return
    client: Redis = coredis.Redis.from_url(
        url,
        connect_timeout=REDIS_TIMEOUT,
        stream_timeout=REDIS_TIMEOUT,
        retry_policy=coredis.retry.NoRetryPolicy(),
        verify_version=False,
    )
    async with client:
        yield client


class RedisHealth:
    """Says once that Redis went away and once that it came back.

    `failures` counts failed calls, for metrics.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.down = False
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if not self.down:
            self.down = True
            log.warning("Redis unavailable for %s (%s); going on without it", self.what, exc)

    def ok(self) -> None:
        if self.down:
            self.down = False
            log.warning("Redis is back for %s", self.what)
