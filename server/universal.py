"""The Universal Endpoint, shared by both transports (HTTP and WebSocket).

Each transport parses its own framing, then calls `prepare` and `run`: one
code path decides steps, retries and fallback, and the transport only adapts
the committed response to its wire format.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.config import Config, GatewaySettings
from engine.ids import uuid7
from engine.plan import Context, NativeRequest, StepPlan, plan_native, plan_step
from engine.retry import Schedule
from engine.steps import Step
from providers import Registry
from server.controls import Controls
from server.executor import Committed, execute
from server.hooks import HookChain, Hooks
from server.upstream import ConnectionPool

log = logging.getLogger("gateway")
# The same ignored-option warning is logged at most once per this many seconds.
WARN_INTERVAL = 60.0
_warned: dict[str, float] = {}

# Response headers never passed from upstream to the client (hop-by-hop).
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
    }
)


@dataclass(slots=True)
class Prepared:
    """One request, planned: its steps, its retry schedule and its ids."""

    plans: list[StepPlan]
    schedule: Schedule
    log_id: str
    event_id: str
    ctx: Context


class Universal:
    """Everything a gateway request needs: config, providers, the one pool, the features.

    `features` are the hooks of the features in use (cache, logs, ...), called
    in order; with none, requests take the plain path. `controls` holds the
    rate limits and caps every surface admits its requests through.
    """

    def __init__(
        self,
        config: Config,
        registry: Registry,
        pool: ConnectionPool,
        features: list[Hooks] | None = None,
        controls: Controls | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.pool = pool
        self.hooks: Hooks | None = HookChain(features) if features else None
        self.controls = controls or Controls.build(config, None)

    def context(
        self,
        account_id: str,
        gateway: GatewaySettings,
        request_cf: Mapping[str, str],
        gateway_id: str = "",
        request_type: str = "universal",
    ) -> Context:
        ctx = Context.build(
            self.registry.resolve, account_id, request_cf, gateway, gateway_id, request_type
        )
        if ctx.warnings:
            warn(ctx.warnings)
        return ctx

    def prepare(self, ctx: Context, steps: list[Step], event_id: str | None = None) -> Prepared:
        """Plan a Universal request: every step, in order."""
        plans = [plan_step(step, index, ctx) for index, step in enumerate(steps)]
        for plan in plans:
            if plan.warnings:
                warn(plan.warnings, f"step {plan.index}: ")
        return self._prepared(plans, ctx, event_id)

    def prepare_native(self, ctx: Context, request: NativeRequest) -> Prepared:
        """Plan a provider-native request: one step, the request's own retry settings."""
        return self._prepared([plan_native(request, ctx)], ctx, None)

    def _prepared(self, plans: list[StepPlan], ctx: Context, event_id: str | None) -> Prepared:
        log_id = uuid7()
        schedule = Schedule([plan.handling for plan in plans], ctx.gateway.fallback_on)
        event_id = event_id or ctx.options.event_id or log_id
        return Prepared(plans, schedule, log_id, event_id, ctx)

    async def run(self, prepared: Prepared) -> Committed:
        return await execute(
            self.pool, prepared, self.hooks, cap=self.config.server.upstream_first_byte_timeout
        )


def gateway_headers(
    prepared: Prepared, step: int, plan: StepPlan | None
) -> list[tuple[bytes, bytes]]:
    """The `cf-aig-*` response headers Cloudflare sends."""
    log_id = prepared.log_id.encode()
    headers = [
        (b"cf-aig-step", str(step).encode()),
        (b"cf-aig-log-id", log_id),
        (b"cf-aig-event-id", prepared.event_id.encode()),
        (b"cf-aig-request-id", log_id),
        (b"cf-aig-cache-status", b"MISS"),
    ]
    if plan is not None:
        headers.append((b"cf-aig-provider", plan.provider.encode()))
        if plan.model and plan.model.isprintable() and plan.model.isascii():
            headers.append((b"cf-aig-model", plan.model.encode()))
    return headers


def response_headers(committed: Committed, prepared: Prepared) -> list[tuple[bytes, bytes]]:
    headers = [(k, v) for k, v in committed.response.headers if k not in _HOP_BY_HOP]
    headers += gateway_headers(prepared, committed.plan.index, committed.plan)
    return headers


def warn(messages: Iterable[str], where: str = "") -> None:
    """Log ignored request options, each distinct message at most once a minute.

    A client that sends the same bad header on every request must not flood the log.
    """
    now = time.monotonic()
    for message in messages:
        text = where + message
        if now - _warned.get(text, -WARN_INTERVAL) >= WARN_INTERVAL:
            if len(_warned) > 1024:
                _warned.clear()
            _warned[text] = now
            log.warning("request option ignored: %s", text)
