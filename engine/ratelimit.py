"""Rate-limit arithmetic: fixed and sliding windows, and how long to wait.

Pure functions of (state, now); `stores.ratelimit` keeps the state, in memory
or in Redis, where a Lua script performs exactly these steps atomically.

Rules:
1. Fixed windows follow the clock: window n covers [n * interval,
   (n + 1) * interval) seconds since the Unix epoch. With 10 per 600 s,
   10 requests at 12:09 and 10 at 12:11 are all allowed.
2. Sliding: at most `limit` allowed requests in any trailing `interval`,
   the half-open (now - interval, now]; an exact log of the allowed requests'
   times, so the second batch above is refused until 12:19.
3. Only allowed requests count; a refused one changes nothing, so a client
   that keeps knocking is let in as soon as the window allows.
4. `Retry-After` is the whole number of seconds, rounded up and at least 1,
   until a request would be allowed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from engine.config import RateLimit
from engine.errors import RATE_LIMITED, GatewayError


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: int = 0  # seconds; set when refused


ALLOWED = Decision(True)


def retry_after(seconds: float) -> int:
    """Seconds to wait, as `Retry-After` carries them: rounded up, at least 1."""
    return max(1, math.ceil(seconds - 1e-9))


def fixed_window(interval: float, now: float) -> tuple[int, float]:
    """The epoch-aligned window `now` falls in, and the time it ends."""
    index = math.floor(now / interval)
    return index, (index + 1) * interval


class FixedCounter:
    """One gateway's fixed-window state: the current window and its count."""

    __slots__ = ("count", "window")

    def __init__(self) -> None:
        self.window = -1
        self.count = 0

    def hit(self, rule: RateLimit, now: float) -> Decision:
        window, ends = fixed_window(rule.interval, now)
        if window != self.window:
            self.window, self.count = window, 0
        if self.count >= rule.limit:
            return Decision(False, retry_after(ends - now))
        self.count += 1
        return ALLOWED


class SlidingLog:
    """One gateway's sliding-window state: the times of the allowed requests in the window."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def hit(self, rule: RateLimit, now: float) -> Decision:
        times, start = self.times, now - rule.interval
        while times and times[0] <= start:
            times.popleft()
        while len(times) > rule.limit:  # the limit was lowered: keep only what can matter
            times.popleft()
        if len(times) >= rule.limit:
            return Decision(False, retry_after(times[0] + rule.interval - now))
        times.append(now)
        return ALLOWED


def rate_limited(decision: Decision) -> GatewayError:
    """Cloudflare's 429 / 2003 "Rate limited", with `Retry-After`."""
    error = GatewayError(429, RATE_LIMITED)
    error.headers = ((b"retry-after", str(decision.retry_after).encode()),)
    return error
