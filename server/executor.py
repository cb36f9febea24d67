"""Running a Universal request's steps: attempts, timeouts, retries, fallback.

The decisions (what next, how long to wait) come from `engine.retry.Schedule`;
this module only performs them. Each attempt runs in its own cancel scope whose
deadline is the step's first-byte timeout; for SSE the first event must also
arrive inside it, so an error announced as the first event can still fall back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from engine.errors import PROVIDER_FAILED, GatewayError
from engine.plan import StepPlan
from engine.retry import Attempt, Failure, Schedule
from engine.sse import MAX_HELD, first_event_end, is_error_event, parse_event
from server.upstream import ConnectionPool, Response, UpstreamUnavailable

log = logging.getLogger("gateway.executor")


@dataclass(slots=True)
class Committed:
    """The response the client gets: its head has arrived, the body is still upstream."""

    plan: StepPlan
    attempt: int
    response: Response
    prefix: bytes  # body bytes already read while checking the first SSE event
    is_sse: bool
    failed: bool  # every step failed and this is the last step's response


def is_event_stream(response: Response) -> bool:
    content_type = response.header(b"content-type")
    return content_type is not None and content_type.startswith(b"text/event-stream")


async def _first_event(response: Response) -> tuple[bytes, bool]:
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
    response: Response | None = None
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
    pool: ConnectionPool, plans: list[StepPlan], schedule: Schedule, *, cap: float
) -> Committed:
    """Run attempts until one commits or the schedule gives up.

    Raises GatewayError (502, or 504 after a timeout, code 2005) when the last
    attempt produced no response at all.
    """
    attempt: Attempt | None = schedule.current
    while attempt is not None:
        if attempt.delay:
            await trio.sleep(attempt.delay)
        result = await _try(pool, plans[attempt.step], attempt, cap)
        if isinstance(result, Committed):
            return result
        failure, held = result
        failed = attempt
        attempt = schedule.after(failure)
        _log_failure(plans, failed, failure, attempt)
        if attempt is None and held is not None:
            held.failed = True
            return held
        if held is not None:
            await held.response.aclose()
    if failure.kind == "timeout":
        raise GatewayError(504, PROVIDER_FAILED, "Request timed out")
    raise GatewayError(502, PROVIDER_FAILED)


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
