"""Retries, timeouts and fallback as data.

# Rules

1. A step makes up to `max_attempts` attempts; only retryable failures are
   retried (network errors, first-byte timeouts, 408/409/425/429/5xx).
2. When a step gives up, the next step runs at once (fallback) if the failure
   counts for fallback under the gateway's `fallback_on`.
3. Each attempt has the step's first-byte timeout, except the last retry of
   the whole request, which waits without limit (Cloudflare: "on the final retry
   attempt, your gateway will wait"). A request without retries keeps
   its timeout and answers 504 when it expires.
4. When nothing is left, the executor returns the last response it holds, or
   a gateway error when it holds none.

`Schedule` holds no clock and does no I/O; the executor feeds it outcomes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, TypeVar

from engine.steps import BACKOFFS, MAX_ATTEMPTS, MAX_RETRY_DELAY_MS, StepConfig

if TYPE_CHECKING:
    from engine.config import GatewaySettings

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, *range(500, 600)})


@dataclass(frozen=True, slots=True)
class Handling:
    """Timeout and retry policy of one step, after the header hierarchy."""

    request_timeout: int | None = None  # ms to first byte; None = no limit
    max_attempts: int = 1
    retry_delay: int = 0  # ms
    backoff: str = "constant"

    def delay_before(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based); no jitter."""
        if self.backoff == "linear":
            ms = self.retry_delay * retry
        elif self.backoff == "exponential":
            ms = self.retry_delay * 2 ** (retry - 1)
        else:
            ms = self.retry_delay
        return min(ms, MAX_RETRY_DELAY_MS) / 1000


def _int_header(headers: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        return None  # an invalid value falls through to the next level
    return value if low <= value <= high else None


_T = TypeVar("_T")


def _from_headers(headers: Mapping[str, str]) -> StepConfig:
    """The `cf-aig-*` retry and timeout headers of one level, as a StepConfig."""
    backoff = (headers.get("cf-aig-backoff") or "").strip().lower()
    return StepConfig(
        request_timeout=_int_header(headers, "cf-aig-request-timeout", 0, 2**31),
        max_attempts=_int_header(headers, "cf-aig-max-attempts", 1, MAX_ATTEMPTS),
        retry_delay=_int_header(headers, "cf-aig-retry-delay", 0, MAX_RETRY_DELAY_MS),
        backoff=backoff if backoff in BACKOFFS else None,
    )


def _first(*values: _T | None) -> _T | None:
    return next((value for value in values if value is not None), None)


def resolve_handling(
    config: StepConfig,
    step_headers: Mapping[str, str],
    request_headers: Mapping[str, str],
    gateway: GatewaySettings,
) -> Handling:
    """Apply the hierarchy: step config > step cf-aig-* > request cf-aig-* > gateway.

    Header mappings have lower-cased names.
    """
    if not step_headers and not request_headers and config == _UNSET:
        return _gateway_handling(gateway)  # the common case: nothing overrides the gateway
    return _combine((config, _from_headers(step_headers), _from_headers(request_headers)), gateway)


def _combine(levels: tuple[StepConfig, ...], gateway: GatewaySettings) -> Handling:
    """The first value set at each level, most specific first, else the gateway's."""
    return Handling(
        # 0 means "no timeout" at whichever level sets it.
        request_timeout=_first(*(lv.request_timeout for lv in levels), gateway.request_timeout)
        or None,
        max_attempts=_first(*(lv.max_attempts for lv in levels)) or gateway.retry_max_attempts,
        retry_delay=_first(*(lv.retry_delay for lv in levels), gateway.retry_delay) or 0,
        backoff=_first(*(lv.backoff for lv in levels)) or gateway.retry_backoff,
    )


_UNSET = StepConfig()


@lru_cache(maxsize=256)
def _gateway_handling(gateway: GatewaySettings) -> Handling:
    return _combine((), gateway)


FailureKind = Literal["status", "network", "timeout", "stream_error"]


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureKind
    status: int | None = None  # for "status" and "stream_error"
    detail: str = ""  # for the log: what went wrong, in words

    @property
    def retryable(self) -> bool:
        if self.kind == "status":
            return self.status in RETRYABLE_STATUSES
        return True


@dataclass(frozen=True, slots=True)
class Attempt:
    step: int  # 0-based step index
    number: int  # 1-based attempt number within the step
    timeout: float | None  # seconds to first byte; None = wait without limit
    delay: float = 0.0  # seconds to wait before starting this attempt


class Schedule:
    """Decides which attempt comes next, given how the last one failed."""

    def __init__(self, handlings: list[Handling], fallback_on: str = "all_non_2xx") -> None:
        if not handlings:
            raise ValueError("a schedule needs at least one step")
        self.handlings = handlings
        self.fallback_on = fallback_on
        self.current = self._attempt(0, 1, 0.0)

    def _attempt(self, step: int, number: int, delay: float) -> Attempt:
        handling = self.handlings[step]
        final = step == len(self.handlings) - 1 and number == handling.max_attempts > 1
        timeout = None
        if handling.request_timeout is not None and not final:
            timeout = handling.request_timeout / 1000
        return Attempt(step, number, timeout, delay)

    def after(self, failure: Failure) -> Attempt | None:
        """The next attempt after `failure`, or None when the request has failed."""
        step, number = self.current.step, self.current.number
        handling = self.handlings[step]
        if failure.retryable and number < handling.max_attempts:
            self.current = self._attempt(step, number + 1, handling.delay_before(number))
            return self.current
        falls_back = self.fallback_on == "all_non_2xx" or failure.retryable
        if falls_back and step + 1 < len(self.handlings):
            self.current = self._attempt(step + 1, 1, 0.0)
            return self.current
        return None
