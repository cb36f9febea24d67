"""The stream half every family shares: one OpenAI completion, built chunk by chunk.

Rules, whatever the family:
- each choice's first chunk carries `role: assistant`;
- a tool call's first chunk carries its id, type and name; later ones only
  argument text, at the same `index` (the call's position in the choice);
- `[DONE]` follows a proper end only (a finish reason seen), after the usage
  chunk when the client asked for `stream_options.include_usage`;
- after an error event nothing more is sent.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import orjson

from engine.compat.base import SHAPE_ERRORS
from engine.compat.openai_shape import (
    DONE,
    Usage,
    chunk,
    completion_id,
    error_event,
    now,
    tool_call,
)
from engine.errors import PROVIDER_FAILED
from engine.sse import Event, EventSplitter, parse_event
from engine.sse import error_event as gateway_error_event

# One upstream event may hold an image or a long tool call; past this an
# unterminated event is a broken stream, not something to keep buffering.
MAX_EVENT_BYTES = 16 * 1024 * 1024


class ChunkStream:
    """The OpenAI side of a stream translation; subclasses read the upstream side.

    Subclasses call `start`, `text`, `tool_start`, `tool_arguments`, `end`,
    `close`, `fail` or `broken` as upstream events complete; `take` hands out
    the SSE bytes produced since the last call.
    """

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = completion_id()
        self.created = now()
        self.usage: Usage | None = None
        self.finish_reasons: dict[int, str] = {}
        self.closed = False
        self._out = bytearray()
        self._started: set[int] = set()
        self._tools: dict[tuple[int, Hashable], int] = {}
        self._tool_counts: dict[int, int] = {}

    # --- what subclasses call, one upstream event at a time ------------------

    def start(self, index: int = 0) -> None:
        if index not in self._started:
            self._emit(index, {"content": ""})

    def text(self, text: str, index: int = 0) -> None:
        if text:
            self._emit(index, {"content": text})

    def tool_start(
        self,
        key: Hashable,
        call_id: str,
        name: str,
        arguments: str = "",
        index: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> None:
        position = self._tool_counts.get(index, 0)
        self._tool_counts[index] = position + 1
        self._tools[index, key] = position
        call = {"index": position, **tool_call(call_id, name, arguments), **(extra or {})}
        self._emit(index, {"tool_calls": [call]})

    def tool_arguments(self, key: Hashable, arguments: str, index: int = 0) -> None:
        position = self._tools.get((index, key))
        if position is not None and arguments:
            call = {"index": position, "function": {"arguments": arguments}}
            self._emit(index, {"tool_calls": [call]})

    def tool_count(self, index: int = 0) -> int:
        return self._tool_counts.get(index, 0)

    @property
    def started(self) -> bool:
        """Whether any chunk went out yet (an upstream id can still become the completion id)."""
        return bool(self._started)

    def end(self, finish_reason: str, index: int = 0) -> None:
        """The choice's last chunk: an empty delta and its finish reason."""
        if index in self.finish_reasons:
            return
        self.finish_reasons[index] = finish_reason
        self._emit(index, {}, finish_reason)

    def close(self) -> None:
        """The usage chunk when asked for, then `[DONE]`."""
        if self.closed:
            return
        if self.include_usage:
            usage = self.usage or Usage()
            self._out += chunk(self.id, self.created, self.model, [], usage)
        self._out += DONE
        self.closed = True

    def fail(self, message: str, type_: str, code: str | None = None) -> None:
        """An error the provider reported mid-stream."""
        if not self.closed:
            self._out += error_event(message, type_, code)
            self.closed = True

    def broken(self, message: str) -> None:
        """A stream the gateway cannot read on: the gateway's own error event."""
        if not self.closed:
            self._out += gateway_error_event(message, PROVIDER_FAILED)
            self.closed = True

    # --- the StreamTranslator surface ----------------------------------------

    def finish(self) -> bytes:
        if not self.closed:
            if self.finish_reasons:
                self.close()
            else:
                self.broken("The provider's stream ended before the response was complete")
        return self.take()

    def take(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def _emit(self, index: int, delta: dict[str, Any], finish_reason: str | None = None) -> None:
        if self.closed:
            return
        if index not in self._started:
            self._started.add(index)
            delta = {"role": "assistant", **delta}
        entry = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        self._out += chunk(self.id, self.created, self.model, [entry])


class SSEStream(ChunkStream):
    """A ChunkStream fed by a server-sent-events upstream; subclasses handle events."""

    def __init__(self, model: str, include_usage: bool) -> None:
        super().__init__(model, include_usage)
        self._splitter = EventSplitter()

    def feed(self, data: bytes) -> bytes:
        if self.closed:
            return b""
        for block in self._splitter.feed(data):
            event = parse_event(block)
            if event is not None and not self.closed:
                try:
                    self.on_event(event)
                except SHAPE_ERRORS:
                    self.broken("The provider sent an event the gateway cannot read")
        if len(self._splitter.buffer) > MAX_EVENT_BYTES:
            self.broken("The provider sent an event larger than the gateway accepts")
        return self.take()

    def on_event(self, event: Event) -> None:
        raise NotImplementedError

    def json(self, event: Event) -> dict[str, Any] | None:
        """The event's data as an object; None (and the stream broken) if it is not one."""
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            self.broken("The provider sent an event the gateway cannot read")
            return None
        return data
