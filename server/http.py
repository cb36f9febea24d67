"""The ASGI application hypercorn serves: routing, the Universal Endpoint over HTTP.

Error handling:
  Every gateway-made error is a `GatewayError` rendered once, here, as the
  Cloudflare envelope. Anything unexpected is logged and answered 500 with
  the envelope; no traceback reaches the client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import trio

from engine import routes
from engine.auth import authorize, parse_authorized, raw_slot_values
from engine.config import GatewaySettings
from engine.errors import INVALID_PROVIDER, GatewayError
from engine.limits import check_head
from engine.plan import NativeRequest, raw_cf_headers
from engine.sse import Relay, error_event
from engine.steps import Step, parse_body
from server.executor import Committed
from server.universal import Prepared, Universal, gateway_headers, response_headers
from server.upstream import UpstreamUnavailable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger("gateway")
access = logging.getLogger("gateway.access")

_JSON = [(b"content-type", b"application/json")]
# Gateway surfaces that exist in Cloudflare but not here yet (answered 404 / 2008).
NOT_SERVED_YET = frozenset({"compat", "run"})
# An oversized body is read and dropped up to this multiple of the limit, so the
# client gets its 413; beyond it the connection is simply closed.
DRAIN_FACTOR = 4


class ClientGone(Exception):
    """The client disconnected before the request body was read."""


class GatewayApp:
    def __init__(self, universal: Universal) -> None:
        self.universal = universal
        self.config = universal.config
        self.max_body = universal.config.server.max_body_bytes
        self.access_log = universal.config.server.access_log
        self.controls = universal.controls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        elif kind == "websocket":
            # WebSockets have their own listener (--ws-port); say so rather than hang.
            await send({"type": "websocket.close", "code": 1008})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status, step, note = 500, "-", ""
        # The raw path keeps percent-escapes as the client sent them, for upstream.
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        try:
            check_head(scope["headers"], self.config.server)
            route = routes.match(path)
            if route is None:
                raise GatewayError(404, INVALID_PROVIDER, f"No route for {path}")
            if route.kind == "health":
                status = await _json(send, 200, {"status": "ok"})
            elif route.kind == "universal":
                if scope["method"] != "POST":
                    raise GatewayError(405, 2019, "The Universal Endpoint accepts POST only")
                status, step, note = await self.gateway_http(scope, route, receive, send)
            elif route.provider in NOT_SERVED_YET:
                raise GatewayError(404, INVALID_PROVIDER, f"/{route.provider} is not served yet")
            else:
                status, step, note = await self.gateway_http(scope, route, receive, send)
        except GatewayError as exc:
            status, note = await _error(send, exc), f" {exc.code} {exc.message}"
        except ClientGone:
            status, note = 499, " client gone"
        except Exception:
            log.exception("unexpected error for %s %s", scope["method"], scope["path"])
            status = await _error(send, GatewayError(500, 2005, "Internal gateway error"))
        if self.access_log:
            access.info(
                "%s %s %d step=%s %.1fms%s",
                scope["method"],
                path,
                status,
                step,
                (time.perf_counter() - start) * 1000,
                note,
            )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """Read the request body, answering 413 past `max_body_bytes`.

        An oversized body is still drained (up to a hard cap) before the 413,
        because a client still uploading would otherwise see a connection reset
        instead of the error.
        """
        drain_cap = self.max_body * DRAIN_FACTOR
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > drain_cap:
                raise _too_large(self.max_body)
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= self.max_body:
                chunks.append(chunk)
            elif size > drain_cap:
                raise _too_large(self.max_body)
            if not message.get("more_body", False):
                break
        if size > self.max_body:
            raise _too_large(self.max_body)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def gateway_http(
        self, scope: Scope, route: routes.Route, receive: Receive, send: Send
    ) -> tuple[int, str, str]:
        """A Universal or provider-native request: check, plan, run, relay the answer.

        Checks in Cloudflare's order: the token, then the rate limit and the
        gateway's concurrency cap (`Controls.admit`), then everything else.
        """
        client = scope.get("client")
        address = client[0] if client else ""
        per_ip = self.controls.http_per_ip
        if not per_ip.enter(address):
            raise per_ip.error()
        try:
            request_cf = raw_cf_headers(scope["headers"])
            gateway = self.config.gateway(route.gateway_id)
            credential = request_cf.get("cf-aig-authorization")
            # A Universal request may carry the token in its steps' headers
            # instead (a common mistake, cloudflare/ai#193); check it there
            # once the body is read.
            if credential is not None or route.kind != "universal" or not gateway.tokens:
                if gateway.tokens:
                    authorize(gateway, credential, *raw_slot_values(scope["headers"]))
                with await self.controls.admit(route.gateway_id, gateway):
                    body = await self._read_body(scope, receive)
                    return await self._serve(scope, route, gateway, request_cf, body, send, receive)
            body = await self._read_body(scope, receive)
            steps = parse_authorized(body, gateway, credential, self.config.server.max_steps)
            with await self.controls.admit(route.gateway_id, gateway):
                return await self._serve(
                    scope, route, gateway, request_cf, body, send, receive, steps
                )
        finally:
            per_ip.leave(address)

    async def _serve(
        self,
        scope: Scope,
        route: routes.Route,
        gateway: GatewaySettings,
        request_cf: dict[str, str],
        body: bytes,
        send: Send,
        receive: Receive,
        steps: list[Step] | None = None,
    ) -> tuple[int, str, str]:
        ctx = self.universal.context(
            route.account_id,
            gateway,
            request_cf,
            route.gateway_id,
            "universal" if route.kind == "universal" else "provider",
        )
        if route.kind == "universal":
            if steps is None:  # the token was on the request (or none is needed)
                steps = parse_body(body, self.config.server.max_steps)
            prepared = self.universal.prepare(ctx, steps)
        else:
            query = scope["query_string"].decode("latin-1")
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            native = NativeRequest(
                route.provider, route.rest, query, scope["method"], headers, body
            )
            prepared = self.universal.prepare_native(ctx, native)
        last = len(prepared.plans) - 1
        # What was answered, for the access log; set before sending, because the
        # disconnect that follows a finished response may cancel the last send.
        status, step, note = 499, "-", " client gone"
        async with trio.open_nursery() as nursery:
            # A client that goes away cancels the whole request, upstream call included.
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
            try:
                committed = await self.universal.run(prepared)
            except GatewayError as exc:
                status, step, note = exc.status, str(last), f" {exc.code} {exc.message}"
                await _error(send, exc, gateway_headers(prepared, last, None))
            else:
                status, step, note = committed.response.status, str(committed.plan.index), ""
                note = await _relay(committed, prepared, send)
            nursery.cancel_scope.cancel()
        return status, step, note


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _relay(committed: Committed, prepared: Prepared, send: Send) -> str:
    """Send the committed response, relaying the body as it arrives."""
    response = committed.response
    status, headers = response.status, response_headers(committed, prepared)
    if committed.transform is not None:
        status, headers = committed.transform.head(status, headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    note = " client gone"
    try:
        if committed.is_sse and committed.transform is None:
            note = await _relay_events(committed, send)
        else:
            note = await _relay_body(committed, send)
        return note
    finally:
        await committed.finish(complete=note in ("", " failed-all"))
        with trio.CancelScope(shield=True):
            await response.aclose()


async def _relay_body(committed: Committed, send: Send) -> str:
    """A body relayed piece by piece, through the transform when there is one."""
    response, transform, taps = committed.response, committed.transform, committed.taps
    try:
        chunk = committed.prefix or await response.receive_some()
        while True:
            if taps:
                committed.feed(chunk)
            # The last piece goes with more_body=False: one send fewer per response.
            more = not response.complete and bool(chunk)
            if transform is not None:
                chunk = transform.feed(chunk) + (b"" if more else transform.finish())
            if chunk or not more:
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
            if not more:
                break
            chunk = await response.receive_some()
    except UpstreamUnavailable as exc:
        log.warning("body from step %d cut after commit: %s", committed.plan.index, exc)
        if committed.is_sse:  # end a (translated) stream loudly, never quietly
            body = error_event("Upstream stream ended unexpectedly", 2005)
            await send({"type": "http.response.body", "body": body, "more_body": False})
        # Otherwise returning with the body unfinished makes hypercorn close the
        # connection, so the client sees a truncated body, not a clean end.
        return " incomplete"
    return " failed-all" if committed.failed else ""


async def _relay_events(committed: Committed, send: Send) -> str:
    relay = Relay()
    response, taps = committed.response, committed.taps
    chunk = committed.prefix
    try:
        while True:
            if taps:
                committed.feed(chunk)
            if response.complete:
                break
            if out := relay.feed(chunk):
                await send({"type": "http.response.body", "body": out, "more_body": True})
            chunk = await response.receive_some()
        chunk = relay.feed(chunk)
    except UpstreamUnavailable as exc:
        # Cut after commit: end loudly with an error event, never a quiet end.
        log.warning("stream from step %d cut after commit: %s", committed.plan.index, exc)
        body = error_event("Upstream stream ended unexpectedly", 2005)
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return " incomplete"
    await send({"type": "http.response.body", "body": chunk + relay.finish(), "more_body": False})
    return ""


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, 2019, f"Request body is larger than the limit of {limit} bytes")


async def _json(send: Send, status: int, payload: object) -> int:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": orjson.dumps(payload)})
    return status


async def _error(send: Send, exc: GatewayError, extra: Sequence[tuple[bytes, bytes]] = ()) -> int:
    await send(
        {
            "type": "http.response.start",
            "status": exc.status,
            "headers": [*_JSON, *exc.headers, *extra],
        }
    )
    await send({"type": "http.response.body", "body": exc.body()})
    return exc.status
