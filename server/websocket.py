"""The WebSocket listener: the Universal Endpoint over a persistent socket, and realtime.

`/v1/{account}/{gateway}` serves `universal.create`; a path that names a
provider (`/v1/{account}/{gateway}/{provider}[/{path}]`) is a realtime
session, relayed to that provider's WebSocket by `server/realtime.py`. Both
check the gateway token at the handshake.

Each `universal.create` runs in its own task of a per-connection nursery, so many
events are in flight on one socket, correlated by `eventId`. A bad frame gets a
`universal.error` and the socket stays open. Closing the socket cancels the
connection's in-flight events, upstream calls included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from engine import jsondoc, routes
from engine.auth import AUTH_SUBPROTOCOL, authorize
from engine.config import GatewaySettings
from engine.errors import GatewayError, bad_request
from engine.limits import check_head
from engine.plan import raw_cf_headers
from engine.sse import EventSplitter, parse_event
from engine.steps import parse_steps
from server.executor import Committed
from server.realtime import Realtime
from server.universal import Prepared, Universal
from server.upstream import UpstreamUnavailable

log = logging.getLogger("gateway.websocket")

# Limits Cloudflare does not document; these are our choices.
MAX_MESSAGE = 32 * 1024 * 1024  # an upstream body embedded in one `universal.created`
MAX_IN_FLIGHT = 64
# A client that stops reading cannot hold an event's task forever.
SEND_TIMEOUT = 10.0


@dataclass(slots=True)
class _Activity:
    """When a socket last did something: a message came in or an event ended."""

    last: float


class WebSocketHandler:
    def __init__(self, universal: Universal) -> None:
        self.universal = universal
        self.idle_timeout = universal.config.server.ws_idle_timeout
        self.realtime = Realtime(universal)

    def drain(self, deadline: float) -> None:
        """Shutdown: realtime sessions close both their sides at `deadline` (trio time)."""
        self.realtime.drain(deadline)

    async def __call__(self, request: WebSocketRequest) -> None:
        """Serve one connection; never raise, since that would stop the listener."""
        remote = request.remote
        address = str(remote.address) if not isinstance(remote, str) else remote
        per_ip = self.universal.controls.ws_per_ip
        try:
            if not per_ip.enter(address):
                await request.reject(429, body=per_ip.error().body())
                return
            try:
                await self._serve(request)
            finally:
                per_ip.leave(address)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("unexpected error on WebSocket %s", request.path)

    async def _serve(self, request: WebSocketRequest) -> None:
        try:
            check_head(request.headers, self.universal.config.server)
        except GatewayError as exc:
            await request.reject(exc.status, body=exc.body())
            return
        route = routes.match(request.path.partition("?")[0])
        if route is None or route.kind == "health":
            await request.reject(
                404, body=GatewayError(404, 2008, "No WebSocket route here").body()
            )
            return
        gateway = self.universal.config.gateway(route.gateway_id)
        request_cf = raw_cf_headers(request.headers)
        offered = request.proposed_subprotocols
        credential = request_cf.get("cf-aig-authorization")
        for proto in offered:
            if proto.startswith(AUTH_SUBPROTOCOL):
                credential = credential or proto[len(AUTH_SUBPROTOCOL) :]
        try:
            authorize(gateway, credential)
        except GatewayError as exc:
            await request.reject(401, body=exc.body())
            return
        if route.kind == "provider":
            await self.realtime.serve(request, route, gateway, request_cf)
            return
        # Echo the first subprotocol offered so browsers accept the handshake.
        ws = await request.accept(subprotocol=offered[0] if offered else None)
        slots = trio.Semaphore(MAX_IN_FLIGHT)
        activity = _Activity(trio.current_time())
        async with trio.open_nursery() as nursery:
            while True:
                deadline = activity.last + self.idle_timeout
                busy = slots.value < MAX_IN_FLIGHT
                if busy:  # not idle while an event runs; look again later
                    deadline = max(deadline, trio.current_time() + self.idle_timeout)
                try:
                    with trio.move_on_at(deadline) as idle:
                        message = await ws.get_message()
                except ConnectionClosed:
                    break
                if idle.cancelled_caught:
                    quiet = trio.current_time() >= activity.last + self.idle_timeout
                    if quiet and slots.value == MAX_IN_FLIGHT:
                        await ws.aclose(code=1000, reason="idle timeout")
                        break
                    continue
                activity.last = trio.current_time()
                await slots.acquire()
                nursery.start_soon(
                    self._frame, ws, route, gateway, request_cf, message, slots, activity
                )
            nursery.cancel_scope.cancel()

    async def _frame(
        self,
        ws: WebSocketConnection,
        route: routes.Route,
        gateway: GatewaySettings,
        request_cf: dict[str, str],
        message: str | bytes,
        slots: trio.Semaphore,
        activity: _Activity,
    ) -> None:
        event_id: str | None = None
        send = _sender(ws)
        error: GatewayError | None = None
        try:
            frame = _parse_frame(message)
            body = frame["request"]
            event_id = _event_id(body)
            with await self.universal.controls.admit(route.gateway_id, gateway):
                steps = parse_steps(body, self.universal.config.server.max_steps)
                ctx = self.universal.context(
                    route.account_id, gateway, request_cf, route.gateway_id, "websocket"
                )
                prepared = self.universal.prepare(ctx, steps, event_id)
                event_id = prepared.event_id
                committed = await self.universal.run(prepared)
                await _answer(send, committed, prepared)
            log.info(
                "universal.create %s %d step=%d",
                event_id,
                committed.response.status,
                committed.plan.index,
            )
        except GatewayError as exc:
            log.info("universal.create %s error %d: %s", event_id, exc.code, exc.message)
            error = exc
        except ConnectionClosed:
            pass  # the client left; nothing to answer
        except Exception:
            # A bug in one event must not take the socket (or the listener) down.
            log.exception("unexpected error handling event %s", event_id)
            error = GatewayError(500, 2005, "Internal gateway error")
        finally:
            slots.release()
            activity.last = trio.current_time()
        if error is not None:
            payload = {
                "type": "universal.error",
                "metadata": {"eventId": event_id},
                "error": error.envelope(),
            }
            with suppress(ConnectionClosed), trio.move_on_after(SEND_TIMEOUT):
                await send(payload)


def _sender(ws: WebSocketConnection) -> Callable[[dict[str, Any]], Any]:
    async def send(payload: dict[str, Any]) -> None:
        await ws.send_message(orjson.dumps(payload).decode())

    return send


def _parse_frame(message: str | bytes) -> dict[str, Any]:
    frame = jsondoc.loads(message, "Frame")
    if not isinstance(frame, dict):
        raise bad_request("Frame must be a JSON object")
    if frame.get("type") != "universal.create":
        raise bad_request(f"Unsupported message type: {frame.get('type')!r}")
    if not isinstance(frame.get("request"), dict | list):
        raise bad_request("'request' must be a step object or an array of steps")
    return frame


def _event_id(body: Any) -> str | None:
    first = body[0] if isinstance(body, list) and body else body
    value = first.get("eventId") if isinstance(first, dict) else None
    return value if isinstance(value, str) else None


def _metadata(committed: Committed, prepared: Prepared) -> dict[str, Any]:
    content_type = committed.response.header(b"content-type") or b""
    return {
        "cacheStatus": "HIT" if committed.cached else "MISS",
        "eventId": prepared.event_id,
        "logId": prepared.log_id,
        "step": str(committed.plan.index),
        "contentType": content_type.decode("latin-1"),
        "provider": committed.plan.provider,
        "model": committed.plan.model,
        "status": committed.response.status,
    }


def _json_or_text(data: bytes | str) -> Any:
    """An upstream body as JSON to embed in a frame, or as text when it is not
    JSON or nests too deep to be written back."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        document = None
    else:
        if jsondoc.fits(document, data):
            return document
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


async def _answer(send: Any, committed: Committed, prepared: Prepared) -> None:
    metadata = _metadata(committed, prepared)
    response, transform = committed.response, committed.transform
    complete = False
    try:
        if not committed.is_sse:
            body = committed.prefix + await response.read_all(MAX_MESSAGE)
            committed.feed(body)
            if transform is not None:
                body = transform.feed(body) + transform.finish()
            await send(
                {"type": "universal.created", "metadata": metadata, "response": _json_or_text(body)}
            )
            complete = True
            return
        await send({"type": "universal.created", "metadata": metadata})
        splitter = EventSplitter()
        chunk, ended = committed.prefix, False
        stream_meta = {"eventId": prepared.event_id}
        while True:
            committed.feed(chunk)
            if transform is not None:
                chunk = transform.feed(chunk) + (transform.finish() if ended else b"")
            for block in splitter.feed(chunk):
                event = parse_event(block)
                if event is None or event.data == "[DONE]":
                    continue
                await send(
                    {
                        "type": "universal.stream",
                        "metadata": stream_meta,
                        "response": _json_or_text(event.data),
                    }
                )
            if ended:
                break
            chunk = await response.receive_some()
            ended = not chunk
        await send({"type": "universal.done", "metadata": metadata})
        complete = True
    except UpstreamUnavailable as exc:
        log.warning("stream for event %s cut after commit: %s", prepared.event_id, exc)
        error = GatewayError(502, 2005, "Upstream stream ended unexpectedly")
        await send(
            {
                "type": "universal.error",
                "metadata": {"eventId": prepared.event_id},
                "error": error.envelope(),
            }
        )
    finally:
        await committed.finish(complete)
        with trio.CancelScope(shield=True):
            await response.aclose()
