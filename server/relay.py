"""The relay under a realtime session: frames one way, and closing a side.

Kept apart from the session's lifecycle (`server/realtime.py`) so the part that
runs for every frame is small enough to read at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection

from engine.realtime import ABNORMAL, GOING_AWAY, Flow

# A peer that does not answer a close frame is disconnected after this long.
CLOSE_TIMEOUT = 2.0
SHUTDOWN = CloseReason(GOING_AWAY, "gateway shutting down")


@dataclass(slots=True)
class Ending:
    """How the relay ended, and when a message last went either way."""

    last: float
    by: str = ""  # client | upstream | idle | shutdown; empty while running
    code: int = 1000
    reason: str | None = None
    opened: bool = False  # the upstream handshake completed

    def finish(self, by: str, reason: CloseReason | None) -> None:
        if not self.by:  # the first end wins
            self.by = by
            self.code, self.reason = (reason.code, reason.reason) if reason else (ABNORMAL, None)


async def pump(
    src: WebSocketConnection,
    dst: WebSocketConnection,
    flow: Flow,
    side: str,
    end: Ending,
    stop: trio.CancelScope,
) -> None:
    """Relay `src`'s messages to `dst` in order, one at a time (backpressure)."""
    get, send, now = src.get_message, dst.send_message, trio.current_time
    while True:
        try:
            message = await get()
        except ConnectionClosed as exc:
            end.finish(side, exc.reason)
            stop.cancel()
            return
        flow.frames += 1
        if type(message) is bytes or message.isascii():
            flow.bytes += len(message)
        else:
            flow.bytes += len(message.encode())
        end.last = now()
        try:
            await send(message)
        except ConnectionClosed:
            return  # `dst` is closing: the pump reading it reports how, after its last message


async def close(ws: WebSocketConnection, code: int, reason: str | None) -> None:
    """Close one side, shielded and bounded; a side already closed is left as it is."""
    with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
        await ws.aclose(code, reason)
