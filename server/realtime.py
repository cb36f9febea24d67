"""Realtime WebSocket passthrough: the client keeps one socket to us, we keep one upstream.

A session, in the WebSocket listener's handler task (after `websocket.py` has
matched the route and checked the gateway token):
  plan (engine.realtime) -> session cap -> features' `realtime_open` -> accept,
  echoing the first subprotocol -> open the provider's WebSocket with
  trio-websocket's client -> relay -> close both sides -> record the session.

Relay: two pump tasks and a watcher (idle timeout, shutdown) in one nursery.
A pump awaits `get_message` on one side, then `send_message` on the other, so
a slow reader stalls the side that feeds it: per direction the gateway holds
trio-websocket's one-message queue and the message in hand, never a growing
buffer.

Whatever ends a session (a side closing, the idle timeout, the end of the
grace period after SIGTERM) is noted and the nursery cancelled; the closes
happen after it, shielded and bounded, while both connections still read, so
each side gets its close frame and its answer is awaited. A session cancelled
from outside (the listener's last resort at shutdown) still sends both sides 1001.

Error handling: the upstream's refusal, an unreachable upstream and a
handshake timeout are close codes and reasons for the client; nothing here
raises into the listener except bugs, which `WebSocketHandler` logs.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import AbstractAsyncContextManager

import trio
from trio_websocket import (
    CloseReason,
    WebSocketConnection,
    WebSocketRequest,
)

from engine.config import GatewaySettings
from engine.errors import GatewayError
from engine.ids import uuid7
from engine.realtime import (
    INTERNAL_ERROR,
    TRY_AGAIN_LATER,
    RealtimeRequest,
    RealtimeSession,
    plan_realtime,
    relay_close,
)
from engine.routes import Route
from server.provider_ws import ProviderSocketError, open_provider_socket
from server.relay import CLOSE_TIMEOUT, SHUTDOWN, Ending, close, pump
from server.universal import Universal

log = logging.getLogger("gateway.realtime")
access = logging.getLogger("gateway.access")

# Bytes read from a socket at a time; trio-websocket's 4 KiB default costs throughput.
RECEIVE_BYTES = 256 * 1024
# Whole messages trio-websocket queues per connection before it stops reading.
QUEUED_MESSAGES = 1


class _Slot:
    """One live session counted against its gateway's cap, until `release`."""

    def __init__(self, live: dict[str, int], gateway_id: str) -> None:
        self.live, self.gateway_id = live, gateway_id
        live[gateway_id] = live.get(gateway_id, 0) + 1
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.live[self.gateway_id] -= 1
            if not self.live[self.gateway_id]:
                del self.live[self.gateway_id]


class Realtime:
    """Serves realtime sessions; counts live sessions per gateway for the cap."""

    def __init__(self, universal: Universal) -> None:
        self.universal = universal
        server = universal.config.server
        self.max_frame = server.ws_max_frame_bytes
        self.max_sessions = server.realtime_max_sessions
        self.idle_timeout = server.realtime_idle_timeout
        self.connect_timeout = server.upstream_connect_timeout
        self.access_log = server.access_log
        self.live: dict[str, int] = {}
        self.draining = trio.Event()
        self.closing_at = math.inf  # trio time at which shutdown closes every session

    def drain(self, deadline: float) -> None:
        """Shutdown: every session closes both sides with 1001 at `deadline`."""
        self.closing_at = deadline
        self.draining.set()

    async def serve(
        self,
        request: WebSocketRequest,
        route: Route,
        gateway: GatewaySettings,
        request_cf: dict[str, str],
    ) -> None:
        """One session, from the authorized handshake to its record."""
        path, _, query = request.path.partition("?")
        ctx = self.universal.context(
            route.account_id, gateway, request_cf, route.gateway_id, "websocket-realtime"
        )
        offered = request.proposed_subprotocols
        try:
            plan = plan_realtime(
                RealtimeRequest(route.provider, route.rest, query, request.headers, offered), ctx
            )
        except GatewayError as exc:
            log.info("realtime %s refused: %d %s", path, exc.code, exc.message)
            await request.reject(exc.status, body=exc.body())
            return
        session = RealtimeSession(uuid7(), ctx, plan, path, time.time(), list(plan.headers))
        gateway_id = route.gateway_id
        if self.live.get(gateway_id, 0) >= self.max_sessions:
            await self._over_limit(request, session, gateway_id)
            return
        slot = _Slot(self.live, gateway_id)
        started = trio.current_time()
        try:
            try:
                await self.universal.controls.check_rate(gateway_id, gateway)
            except GatewayError as exc:
                session.ended_by = "rate limited"
                await request.reject(exc.status, body=exc.body())
                return
            if self.universal.hooks is not None:
                try:
                    await self.universal.hooks.realtime_open(session)
                except GatewayError as exc:
                    session.ended_by = "rejected"
                    await request.reject(exc.status, body=exc.body())
                    return
            client = await request.accept(subprotocol=plan.echo)
            await self._session(client, session, slot)
        finally:
            slot.release()
            session.duration = trio.current_time() - started
            self._record(session)

    async def _over_limit(
        self, request: WebSocketRequest, session: RealtimeSession, gateway_id: str
    ) -> None:
        reason = f"too many realtime sessions on gateway {gateway_id} (limit {self.max_sessions})"
        client = await request.accept(subprotocol=session.plan.echo)
        await close(client, TRY_AGAIN_LATER, reason)
        session.ended_by, session.client_close = "limit", (TRY_AGAIN_LATER, reason)
        self._record(session)

    async def _session(
        self, client: WebSocketConnection, session: RealtimeSession, slot: _Slot
    ) -> None:
        end = Ending(trio.current_time())
        try:
            async with self._open_upstream(session) as upstream:
                end.opened = True
                try:
                    await self._relay(client, upstream, session, end)
                finally:
                    slot.release()  # a closing session no longer counts against the cap
                    await self._close_both(client, upstream, session, end)
        except ProviderSocketError as exc:
            log.warning("realtime %s: %s", session.plan.where, exc.reason)
            end.by, end.code, end.reason = exc.kind, exc.code, exc.reason
        except Exception:
            if not end.opened:  # a bug, logged by the listener; the client still gets a close
                end.by, end.code, end.reason = "error", INTERNAL_ERROR, "gateway error"
            raise
        finally:
            if not end.opened:
                if not end.by:  # cancelled while connecting: shutdown
                    end.by, end.code, end.reason = "shutdown", SHUTDOWN.code, SHUTDOWN.reason
                session.ended_by, session.client_close = end.by, (end.code, end.reason)
                await close(client, end.code, end.reason)

    def _open_upstream(
        self, session: RealtimeSession
    ) -> AbstractAsyncContextManager[WebSocketConnection]:
        plan = session.plan
        return open_provider_socket(
            plan.origin,
            plan.target,
            ssl_context=self.universal.pool.ssl_context if plan.secure else None,
            subprotocols=plan.subprotocols,
            headers=session.headers,
            max_message=self.max_frame,
            receive_bytes=RECEIVE_BYTES,
            queued_messages=QUEUED_MESSAGES,
            handshake_within=self.connect_timeout,
        )

    async def _relay(
        self,
        client: WebSocketConnection,
        upstream: WebSocketConnection,
        session: RealtimeSession,
        end: Ending,
    ) -> None:
        async with trio.open_nursery() as nursery:
            stop = nursery.cancel_scope
            nursery.start_soon(pump, client, upstream, session.sent, "client", end, stop)
            nursery.start_soon(pump, upstream, client, session.received, "upstream", end, stop)
            nursery.start_soon(self._watch, end, stop)

    async def _watch(self, end: Ending, stop: trio.CancelScope) -> None:
        """End the relay once it was idle too long, or once shutdown's grace period is over."""
        while True:
            now, idle_at = trio.current_time(), end.last + self.idle_timeout
            if now >= self.closing_at:
                end.finish("shutdown", SHUTDOWN)
            elif now >= idle_at:
                end.finish("idle", CloseReason(1000, "idle timeout"))
            if end.by:
                stop.cancel()
                return
            wake = min(idle_at, self.closing_at)
            if self.draining.is_set():
                await trio.sleep_until(wake)
            else:
                with trio.move_on_at(wake):
                    await self.draining.wait()

    async def _close_both(
        self,
        client: WebSocketConnection,
        upstream: WebSocketConnection,
        session: RealtimeSession,
        end: Ending,
    ) -> None:
        """Close each side as the end requires; a side that closed itself keeps its code."""
        told = (end.code, end.reason)
        if end.by == "client":
            to_client, to_upstream = told, relay_close(*told, "client", self.max_frame)
        elif end.by == "upstream":
            to_client, to_upstream = relay_close(*told, "upstream", self.max_frame), told
        elif end.by in ("idle", "shutdown"):
            to_client = to_upstream = told
        else:  # cancelled from outside (the listener's last resort at shutdown)
            end.by = "shutdown"
            to_client = to_upstream = (SHUTDOWN.code, SHUTDOWN.reason)
        session.ended_by = end.by
        session.client_close, session.upstream_close = to_client, to_upstream
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(close, client, *to_client)
                nursery.start_soon(close, upstream, *to_upstream)

    def _record(self, session: RealtimeSession) -> None:
        if self.access_log:
            up, down = session.sent, session.received
            access.info(
                "realtime %s %s %.1fs sent %d frames %d B, received %d frames %d B; "
                "ended by %s, client %s, upstream %s",
                session.path,
                session.plan.where,
                session.duration,
                up.frames,
                up.bytes,
                down.frames,
                down.bytes,
                session.ended_by,
                _code(session.client_close),
                _code(session.upstream_close),
            )
        if self.universal.hooks is not None:
            self.universal.hooks.realtime_closed(session)


def _code(close: tuple[int, str | None] | None) -> str:
    if close is None:
        return "-"
    code, reason = close
    return f"{code} ({reason})" if reason else str(code)
