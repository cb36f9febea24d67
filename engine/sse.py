"""Server-sent events: just enough parsing to commit, relay and translate streams.

The gateway relays SSE bytes unchanged. It parses only (a) the first event of
a stream, to decide whether the step failed before committing, and
(b) event boundaries, so a stream cut mid-event never hands the client half an
event before the explicit error event.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

_BOUNDARIES = (b"\n\n", b"\r\n\r\n", b"\r\r")
# Hold back at most this much of an unterminated event; beyond it, relay anyway
# so a stream that never sends blank lines is still never buffered whole.
MAX_HELD = 64 * 1024


@dataclass(frozen=True, slots=True)
class Event:
    event: str | None
    data: str


def _boundary_end(buf: bytes | bytearray, start: int = 0) -> int:
    """Index just past the first event boundary at or after `start`, or -1."""
    best = -1
    for sep in _BOUNDARIES:
        i = buf.find(sep, start)
        if i != -1 and (best == -1 or i + len(sep) < best):
            best = i + len(sep)
    return best


def _last_boundary_end(buf: bytes | bytearray) -> int:
    best = -1
    for sep in _BOUNDARIES:
        i = buf.rfind(sep)
        if i != -1:
            best = max(best, i + len(sep))
    return best


def parse_event(block: bytes) -> Event | None:
    """Parse one event block; None for a block with no fields (comments only)."""
    event: str | None = None
    data: list[str] = []
    seen = False
    for line in block.decode("utf-8", "replace").splitlines():
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event, seen = value, True
        elif name == "data":
            data.append(value)
            seen = True
    return Event(event, "\n".join(data)) if seen else None


class EventSplitter:
    """Splits a byte stream into complete event blocks."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        self.buffer += chunk
        blocks = []
        start = 0
        while (end := _boundary_end(self.buffer, start)) != -1:
            blocks.append(bytes(self.buffer[start:end]))
            start = end
        del self.buffer[:start]
        return blocks


def is_error_event(event: Event) -> bool:
    """True for an error announced as the first event of a 200 stream.

    Anthropic sends `event: error`; OpenAI-style providers send a data object
    with an `error` member; some send `{"type": "error"}`.
    """
    if event.event == "error":
        return True
    if not event.data.startswith("{"):
        return False
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and (bool(data.get("error")) or data.get("type") == "error")


class Relay:
    """Passes SSE bytes through whole events at a time.

    `feed` returns the bytes safe to send now (up to the last complete event);
    the unterminated tail waits for its end. `finish` returns the tail at a
    clean end of stream.
    """

    def __init__(self) -> None:
        self.tail = b""

    def feed(self, chunk: bytes) -> bytes:
        if self.tail:
            chunk = self.tail + chunk
        end = _last_boundary_end(chunk)
        if end == len(chunk):
            self.tail = b""
            return chunk
        if end == -1:
            if len(chunk) > MAX_HELD:
                self.tail = b""
                return chunk
            self.tail = chunk
            return b""
        self.tail = chunk[end:]
        return chunk[:end]

    def finish(self) -> bytes:
        tail, self.tail = self.tail, b""
        return tail


def error_event(message: str, code: int) -> bytes:
    """The event that ends a stream the upstream cut after commit.

    Shaped so both the OpenAI SDK (`error` member) and the Anthropic SDK
    (`event: error`) raise instead of ending quietly.
    """
    payload = {
        "type": "error",
        "error": {"type": "gateway_error", "code": code, "message": message},
    }
    return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"


def first_event_end(buf: bytes | bytearray) -> int:
    """Index just past the first event block that carries fields, or -1."""
    start = 0
    while (end := _boundary_end(buf, start)) != -1:
        if parse_event(bytes(buf[start:end])) is not None:
            return end
        start = end
    return -1
