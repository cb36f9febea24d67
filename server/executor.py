"""Running a Universal request's steps: attempts, timeouts, retries, fallback.

The decisions (what next, how long to wait) come from `engine.retry.Schedule`;
this module only performs them. Each attempt runs in its own cancel scope whose
deadline is the step's first-byte timeout; for SSE the first event must also
arrive inside it, so an error announced as the first event can still fall back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from engine.errors import PROVIDER_FAILED, GatewayError
from engine.plan import StepPlan
from engine.retry import Attempt, Failure
from engine.sse import MAX_HELD, first_event_end, is_error_event, parse_event
from server.hooks import AttemptResult, Hooks, Tap, Transform
from server.responses import ResponseBody
from server.upstream import ConnectionPool, UpstreamUnavailable

if TYPE_CHECKING:
    from server.universal import Prepared

log = logging.getLogger("gateway.executor")
# How long taps may take to finish once a body has ended (a cache write, a log record).
TAP_FINISH_TIMEOUT = 5.0


@dataclass(slots=True)
class Committed:
    """The response the client gets: its head has arrived, the body is still upstream."""

    plan: StepPlan
    attempt: int
    response: ResponseBody
    prefix: bytes  # body bytes already read while checking the first SSE event
    is_sse: bool
    failed: bool  # every step failed and this is the last step's response
    cached: bool = False  # answered from the cache, not upstream
    taps: list[Tap] = field(default_factory=list)  # see everything relayed (server.hooks)
    transform: Transform | None = None  # rewrites what the client gets (server.hooks)

    def feed(self, chunk: bytes) -> None:
        """Show relayed upstream bytes to every tap."""
        for tap in self.taps:
            tap.feed(chunk)

    async def finish(self, complete: bool) -> None:
        """Tell the taps the body ended; shielded, so a client that left still gets logged."""
        if not self.taps:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(TAP_FINISH_TIMEOUT):
            for tap in self.taps:
                try:
                    await tap.finish(complete)
                except Exception:
                    log.exception("a response tap failed to finish")


def is_event_stream(response: ResponseBody) -> bool:
    content_type = response.header(b"content-type")
    return content_type is not None and content_type.startswith(b"text/event-stream")


async def _first_event(response: ResponseBody) -> tuple[bytes, bool]:
    """Read until the first SSE event is complete; returns (bytes read, is error).

    A first event longer than MAX_HELD is not waited for: the stream commits
    as it is rather than being buffered.
    """
    buf = bytearray()
    while (end := first_event_end(buf)) == -1:
        chunk = await response.receive_some()
        if not chunk:
            return bytes(buf), False
        buf += chunk
        if len(buf) > MAX_HELD:
            return bytes(buf), False
    event = parse_event(bytes(buf[:end]))
    return bytes(buf), event is not None and is_error_event(event)


async def _try(
    pool: ConnectionPool, plan: StepPlan, attempt: Attempt, cap: float
) -> Committed | tuple[Failure, Committed | None]:
    """One attempt. A failure may still hold a response, passed through if nothing is left."""
    timeout = cap if attempt.timeout is None else min(attempt.timeout, cap)
    response: ResponseBody | None = None
    try:
        with trio.move_on_after(timeout):
            response = await pool.request(
                plan.origin, plan.method, plan.target, plan.headers, plan.body
            )
            sse = is_event_stream(response)
            prefix, errored = b"", False
            if 200 <= response.status < 300 and sse:
                prefix, errored = await _first_event(response)
            committed = Committed(plan, attempt.number, response, prefix, sse, False)
            if errored:
                return Failure(
                    "stream_error", 200, "an error as the stream's first event"
                ), committed
            if 200 <= response.status < 300:
                return committed
            return Failure("status", response.status, f"HTTP {response.status}"), committed
    except UpstreamUnavailable as exc:
        if response is not None:
            await response.aclose()
        return Failure("network", None, f"{plan.origin.host_header}: {exc}"), None
    except BaseException:
        if response is not None:
            with trio.CancelScope(shield=True):
                await response.aclose()
        raise
    # The deadline passed before the first byte (or first event).
    if response is not None:
        await response.aclose()
    return Failure("timeout", None, f"no first byte within {timeout:g}s"), None


async def execute(
    pool: ConnectionPool, prepared: Prepared, hooks: Hooks | None, *, cap: float
) -> Committed:
    """Run attempts until one commits or the schedule gives up.

    Raises GatewayError (502, or 504 after a timeout, code 2005) when the last
    attempt produced no response at all.
    """
    plans, schedule = prepared.plans, prepared.schedule
    attempt: Attempt | None = schedule.current
    while attempt is not None:
        if attempt.delay:
            await trio.sleep(attempt.delay)
        plan = plans[attempt.step]
        if hooks is None:
            result = await _try(pool, plan, attempt, cap)
        else:
            result = await _hooked(pool, prepared, hooks, plan, attempt, cap)
        if isinstance(result, Committed):
            if hooks is not None:
                hooks.on_commit(prepared, result)
            return result
        failure, held = result
        failed = attempt
        attempt = schedule.after(failure)
        _log_failure(plans, failed, failure, attempt)
        if attempt is None and held is not None:
            held.failed = True
            if hooks is not None:
                hooks.on_commit(prepared, held)
            return held
        if held is not None:
            await held.response.aclose()
    if failure.kind == "timeout":
        raise GatewayError(504, PROVIDER_FAILED, "Request timed out")
    raise GatewayError(502, PROVIDER_FAILED)


async def _hooked(
    pool: ConnectionPool,
    prepared: Prepared,
    hooks: Hooks,
    plan: StepPlan,
    attempt: Attempt,
    cap: float,
) -> Committed | tuple[Failure, Committed | None]:
    """One attempt with the features' hooks around it."""
    started = trio.current_time()
    result = await hooks.before_attempt(prepared, plan, attempt)
    if result is None:
        result = await _try(pool, plan, attempt, cap)
    if isinstance(result, Committed):
        first_byte, failure, committed = trio.current_time(), None, result
    else:
        failure, committed = result
        first_byte = trio.current_time() if committed is not None else None
    hooks.after_attempt(
        prepared, plan, AttemptResult(attempt, started, first_byte, failure, committed)
    )
    return result


def _log_failure(
    plans: list[StepPlan], failed: Attempt, failure: Failure, next_attempt: Attempt | None
) -> None:
    if next_attempt is None:
        then = "no attempt left"
    elif next_attempt.step == failed.step:
        then = f"retry in {next_attempt.delay:g}s"
    else:
        then = f"falling back to step {next_attempt.step} ({plans[next_attempt.step].provider})"
    plan = plans[failed.step]
    log.info(
        "step %d (%s) attempt %d failed: %s; %s",
        failed.step,
        plan.provider,
        failed.number,
        failure.detail,
        then,
    )
