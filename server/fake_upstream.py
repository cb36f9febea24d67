"""A fake AI provider (OpenAI, Anthropic, Workers AI) served over real HTTP/1.1 on trio sockets.

It is both the upstream in gateway tests and the "direct" baseline in benchmarks, so the HTTP
layer is hand-written for speed (no h11, cached response bytes) and every reply can be steered
per request with ``x-fake-*`` headers or ahead of time with :meth:`FakeUpstream.script`.
"""

from __future__ import annotations

import argparse
import signal
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import partial
from http import HTTPStatus

import orjson
import trio

GREETING = "Hello from the fake upstream."
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
RECV_SIZE = 65536
CACHE_LIMIT = 1024
CREATED = int(time.time())

OPENAI, ANTHROPIC, WORKERS, UNKNOWN = "openai", "anthropic", "workers", "unknown"
DEFAULT_MODELS = {OPENAI: "gpt-4o-mini", ANTHROPIC: "claude-3-5-haiku-latest"}
JSON, SSE = b"application/json", b"text/event-stream"
TRUTHY = frozenset({"1", "true", "yes", "on"})
BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}

STREAM_ERRORS = {
    OPENAI: b'data: {"error":{"message":"fake upstream stream error","type":"server_error"}}\n\n',
    ANTHROPIC: b"event: error\ndata: "
    b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
    WORKERS: b'data: {"error":"fake upstream stream error"}\n\n',
}
STREAM_ERRORS[UNKNOWN] = STREAM_ERRORS[OPENAI]


@dataclass
class Reply:
    """One scripted reply; it overrides the ``x-fake-*`` headers of the request it answers."""

    status: int = 200
    delay: float = 0.0  # seconds before sending the response head
    drop: bool = False  # close the connection without any response
    body: bytes | None = None  # override body (sent as application/json)
    stream_error: bool = False  # 200 text/event-stream whose FIRST event is an error
    cut_after: int | None = None  # stream: close after N content chunks (no terminating chunk)


@dataclass
class RecordedRequest:
    """What the fake saw, so tests can assert on what the gateway forwarded upstream."""

    method: str
    path: str  # full target, including query string
    headers: dict[str, str]  # lower-cased names
    body: bytes
    time: float  # trio.current_time() when the request head+body was fully read


class _BadRequest(Exception):
    """A request we cannot parse: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error"}})
        self.response = _head(status, JSON, len(body), keep=False) + body


def _head(status: int, ctype: bytes, length: int | None, keep: bool) -> bytes:
    """Response head; ``length=None`` means a chunked (streamed) body."""
    reason = REASONS.get(status, b"Unknown")
    out = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\n" % (status, reason, ctype)
    if length is None:
        out += b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n"
    else:
        out += b"content-length: %d\r\n" % length
    return out + (b"connection: keep-alive\r\n\r\n" if keep else b"connection: close\r\n\r\n")


def _route(target: str) -> str:
    path = target.partition("?")[0]
    if "/chat/completions" in path:
        return OPENAI
    if "/v1/messages" in path:
        return ANTHROPIC
    if "/ai/run/" in path:
        return WORKERS
    return UNKNOWN


# Byte templates, filled with %-formatting: faster than building dicts and dumping them.
_G = GREETING.encode()
OK_BODIES = {
    OPENAI: b'{"id":"chatcmpl-fake","object":"chat.completion","created":%d,"model":%%s,'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"%s"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}' % (CREATED, _G),
    ANTHROPIC: b'{"id":"msg_fake","type":"message","role":"assistant","model":%%s,"content":'
    b'[{"type":"text","text":"%s"}],"stop_reason":"end_turn","stop_sequence":null,'
    b'"usage":{"input_tokens":9,"output_tokens":7}}' % _G,
    WORKERS: b'{"result":{"response":"%s"},"success":true,"errors":[],"messages":[]}' % _G,
}
ERROR_BODIES = {
    OPENAI: b'{"error":{"message":"fake upstream error %d","type":"server_error","code":null}}',
    ANTHROPIC: b'{"type":"error","error":{"type":"api_error","message":"fake upstream error %d"}}',
    WORKERS: b'{"result":null,"success":false,"errors":[{"code":7009,'
    b'"message":"Upstream service unavailable"}],"messages":[]}',
}
ERROR_BODIES[UNKNOWN] = ERROR_BODIES[OPENAI]
NOT_FOUND = (
    b'{"error":{"message":"fake upstream: no such route",'
    b'"type":"invalid_request_error","code":"not_found"}}'
)
OPENAI_CHUNK = (
    b'data: {"id":"chatcmpl-fake","object":"chat.completion.chunk","created":%d,"model":%%s,'
    b'"choices":[{"index":0,"delta":%%s,"finish_reason":%%s}]%%s}\n\n' % CREATED
)
OPENAI_USAGE = b',"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}'
ANTHROPIC_PRE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_fake",'
    b'"type":"message","role":"assistant","model":%s,"content":[],"stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n',
)
ANTHROPIC_DELTA = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"tok%d "}}\n\n'
)
ANTHROPIC_POST = [
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":7}}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
]
DONE = b"data: [DONE]\n\n"


def _ok_body(kind: str, model: str) -> bytes:
    return OK_BODIES[kind] % orjson.dumps(model) if kind != WORKERS else OK_BODIES[WORKERS]


def _error_body(kind: str, status: int) -> bytes:
    body = ERROR_BODIES[kind]
    return body % status if b"%d" in body else body


def _stream_parts(kind: str, model: str) -> tuple[list[bytes], Callable[[int], bytes], list[bytes]]:
    """(events before the content, content event ``i``, events after) for one provider."""
    m = orjson.dumps(model)
    if kind == ANTHROPIC:
        return [ANTHROPIC_PRE[0] % m, ANTHROPIC_PRE[1]], ANTHROPIC_DELTA.__mod__, ANTHROPIC_POST
    if kind == WORKERS:
        return [], lambda i: b'data: {"response":"tok%d "}\n\n' % i, [DONE]
    stop = OPENAI_CHUNK % (m, b"{}", b'"stop"', OPENAI_USAGE)
    return [], lambda i: OPENAI_CHUNK % (m, b'{"content":"tok%d "}' % i, b"null", b""), [stop, DONE]


def _parse_head(head: bytes) -> tuple[str, str, bool, dict[str, str], bool]:
    """(method, target, http/1.1?, lower-cased headers, any x-fake-* header?) or _BadRequest."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(400, "malformed request line")
    headers: dict[str, str] = {}
    fake = False
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name[0] in " \t" or name[-1] in " \t":
            raise _BadRequest(400, "malformed header line")
        name = name.lower()
        value = value.strip(" \t")
        if name in headers:
            headers[name] += ", " + value
        else:
            headers[name] = value
            if name.startswith("x-fake-"):
                fake = True
    return parts[0], parts[1], parts[2] == "HTTP/1.1", headers, fake


def _parse_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a complete chunked body starting at ``pos``: (body, end) or None if incomplete."""
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = bytes(buf[pos:eol]).partition(b";")[0].strip()
        if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
            raise _BadRequest(400, "malformed chunk size")
        size = int(size_text, 16)
        pos = eol + 2
        if size == 0:
            while (eol := buf.find(b"\r\n", pos)) != pos:  # skip trailers up to the empty line
                if eol < 0:
                    return None
                pos = eol + 2
            return bytes(out), pos + 2
        if len(buf) < pos + size + 2:
            return None
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise _BadRequest(400, "malformed chunk")
        out += buf[pos : pos + size]
        pos += size + 2


def _int_header(headers: dict[str, str], name: str, default: int) -> int:
    raw = headers.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(400, f"{name} must be an integer") from None
    if value < 0:
        raise _BadRequest(400, f"{name} must not be negative")
    return value


class FakeUpstream:
    """The fake provider: records every request, replies per route, steered by headers/scripts."""

    def __init__(self, *, record: bool = True) -> None:
        self.port: int = 0
        self.requests: list[RecordedRequest] = []
        self.record = record  # the benchmark CLI turns this off so memory stays flat
        self._scripts: dict[str, deque[Reply]] = {}
        self._gates: dict[str, trio.Event] = {}
        self._fail_counts: dict[str, int] = {}
        self._cache: dict[tuple[str, str, bool], bytes] = {}
        # Targets of requests whose client hung up while the fake was holding
        # them (in a delay or an x-fake-hold): proof that a caller cancelled.
        self.hangups: list[str] = []
        self.connections = 0  # connections accepted, to observe keep-alive reuse
        self._hangup_events: dict[str, trio.Event] = {}

    def script(self, match: str, *replies: Reply) -> None:
        """Queue replies for requests whose path contains `match`; each request consumes one; when
        the queue is empty, normal behaviour resumes."""
        self._scripts.setdefault(match, deque()).extend(replies)

    def gate(self, name: str) -> trio.Event:
        """The named event an ``x-fake-hold: NAME`` stream waits on after its first chunk."""
        if name not in self._gates:
            self._gates[name] = trio.Event()
        return self._gates[name]

    def hangup(self, target: str) -> trio.Event:
        """Set once a caller hangs up on a held request to `target` (or `hold:NAME`)."""
        return self._hangup_events.setdefault(target, trio.Event())

    def requests_to(self, match: str) -> list[RecordedRequest]:
        """Recorded requests whose target contains `match`."""
        return [r for r in self.requests if match in r.path]

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; task_status.started(port) once listening."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    def _scripted(self, target: str) -> Reply | None:
        for match, queue in self._scripts.items():
            if match in target:
                reply = queue.popleft()
                if not queue:
                    del self._scripts[match]  # keep the no-script fast path fast
                return reply
        return None

    async def _connection(self, stream: trio.SocketStream) -> None:
        """Read requests off one keep-alive connection until it closes or a reply ends it."""
        self.connections += 1
        buf = bytearray()
        try:
            while True:
                while (end := buf.find(b"\r\n\r\n")) < 0 or buf.startswith(b"\r\n"):
                    if buf.startswith(b"\r\n"):  # tolerate stray CRLFs between requests
                        del buf[:2]
                        continue
                    if len(buf) > MAX_HEAD:
                        raise _BadRequest(431, "request head too large")
                    data = await stream.receive_some(RECV_SIZE)
                    if not data:
                        return
                    buf += data
                method, target, http11, headers, fake = _parse_head(bytes(buf[:end]))
                start = end + 4
                if "transfer-encoding" in headers:
                    if headers["transfer-encoding"].lower() != "chunked":
                        raise _BadRequest(501, "unsupported transfer-encoding")
                    while (parsed := _parse_chunked(buf, start)) is None:
                        if len(buf) > MAX_BODY:
                            raise _BadRequest(413, "request body too large")
                        if not (data := await stream.receive_some(RECV_SIZE)):
                            return
                        buf += data
                    body, start = parsed
                else:
                    length = headers.get("content-length", "0")
                    if not length.isdigit():
                        raise _BadRequest(400, "malformed content-length")
                    if (n := int(length)) > MAX_BODY:
                        raise _BadRequest(413, "request body too large")
                    start += n
                    if len(buf) < start and headers.get("expect", "").lower() == "100-continue":
                        await stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    while len(buf) < start:
                        if not (data := await stream.receive_some(RECV_SIZE)):
                            return
                        buf += data
                    body = bytes(buf[end + 4 : start])
                del buf[:start]
                conn = headers.get("connection", "").lower()
                keep = "close" not in conn if http11 else "keep-alive" in conn
                if not await self._respond(stream, method, target, headers, body, keep, fake):
                    return
                if headers.get("x-fake-close", "").lower() in TRUTHY:
                    return  # a server closing an idle keep-alive connection after the reply
        except _BadRequest as exc:
            with suppress(*BROKEN):
                await stream.send_all(exc.response)
        except BROKEN:
            pass
        except Exception:  # a fake must outlive its own bugs; say so loudly instead
            traceback.print_exc()
        finally:
            await trio.aclose_forcefully(stream)

    async def _respond(
        self,
        stream: trio.SocketStream,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        keep: bool,
        fake: bool,
    ) -> bool:
        """Answer one request; returns whether the connection may carry another."""
        if self.record:
            now = trio.current_time()
            self.requests.append(RecordedRequest(method, target, headers, body, now))
        kind = _route(target)
        model, streaming = DEFAULT_MODELS.get(kind, ""), False
        if body:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, dict):
                if isinstance(doc.get("model"), str):
                    model = doc["model"]
                streaming = doc.get("stream") is True
        reply = self._scripted(target) if self._scripts else None
        if reply is None and not fake and not streaming:  # the benchmark's hot path
            key = (kind, model, keep)
            if (data := self._cache.get(key)) is None:
                payload = NOT_FOUND if kind == UNKNOWN else _ok_body(kind, model)
                data = _head(404 if kind == UNKNOWN else 200, JSON, len(payload), keep) + payload
                if len(self._cache) < CACHE_LIMIT:
                    self._cache[key] = data
            await stream.send_all(data)
            return keep

        if reply is None:
            reply = self._reply_from_headers(headers)
        if not 200 <= reply.status <= 599:
            raise _BadRequest(400, "reply status out of range")
        if reply.delay > 0 and await self._hold(stream, target, partial(trio.sleep, reply.delay)):
            return False
        if reply.drop:
            return False
        if reply.body is not None:
            payload, status = reply.body, reply.status
        elif reply.stream_error or (streaming and reply.status < 400 and kind != UNKNOWN):
            return await self._stream(stream, kind, model, keep, reply, headers)
        elif reply.status >= 400:
            payload, status = _error_body(kind, reply.status), reply.status
        elif kind == UNKNOWN:
            payload, status = NOT_FOUND, 404
        else:
            payload, status = _ok_body(kind, model), reply.status
        await stream.send_all(_head(status, JSON, len(payload), keep) + payload)
        return keep

    def _reply_from_headers(self, headers: dict[str, str]) -> Reply:
        """Turn the ``x-fake-*`` request headers into a Reply (fail-first counts per key)."""
        reply = Reply(
            status=_int_header(headers, "x-fake-status", 200),
            delay=_int_header(headers, "x-fake-delay-ms", 0) / 1000,
            drop=headers.get("x-fake-drop", "").lower() in TRUTHY,
            stream_error=headers.get("x-fake-stream-error", "").lower() in TRUTHY,
        )
        if "x-fake-cut-after" in headers:
            reply.cut_after = _int_header(headers, "x-fake-cut-after", 0)
        if "x-fake-fail-first" in headers:
            key = headers.get("x-fake-key", "")
            seen = self._fail_counts[key] = self._fail_counts.get(key, 0) + 1
            if seen <= _int_header(headers, "x-fake-fail-first", 0) and reply.status < 400:
                reply = replace(reply, status=500)
        return reply

    async def _hold(
        self, stream: trio.SocketStream, target: str, wait: Callable[[], Awaitable[object]]
    ) -> bool:
        """Run `wait` unless the client hangs up first; True (and recorded) if it did.

        Assumes no pipelined request arrives meanwhile (the gateway never pipelines).
        """
        hung_up = False

        async def watch(cancel: trio.CancelScope) -> None:
            nonlocal hung_up
            try:
                data = await stream.receive_some(1)
            except (*BROKEN, OSError):
                data = b""
            if not data:
                hung_up = True
                cancel.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            await wait()
            nursery.cancel_scope.cancel()
        if hung_up:
            self.hangups.append(target)
            self.hangup(target).set()
        return hung_up

    async def _stream(
        self,
        stream: trio.SocketStream,
        kind: str,
        model: str,
        keep: bool,
        reply: Reply,
        headers: dict[str, str],
    ) -> bool:
        """Send an SSE reply, one HTTP chunk (one socket write) per event."""
        chunks = _int_header(headers, "x-fake-chunks", 5)
        chunk_delay = _int_header(headers, "x-fake-chunk-delay-ms", 0) / 1000
        hold = headers.get("x-fake-hold")
        status = reply.status if reply.status < 400 else 200

        async def send(event: bytes) -> None:
            await stream.send_all(b"%x\r\n%s\r\n" % (len(event), event))

        await stream.send_all(_head(status, SSE, None, keep))
        if reply.stream_error:
            await send(STREAM_ERRORS[kind])
            await stream.send_all(b"0\r\n\r\n")
            return keep
        pre, delta, post = _stream_parts(kind, model)
        for event in pre:
            await send(event)
        cut = reply.cut_after
        for i in range(chunks if cut is None else min(chunks, cut)):
            if i and chunk_delay:
                await trio.sleep(chunk_delay)
            await send(delta(i))
            if i == 0 and hold and await self._hold(stream, f"hold:{hold}", self.gate(hold).wait):
                return False
        if cut is not None:
            return False  # abrupt close: no trailer events, no terminating chunk
        for event in post:
            await send(event)
        await stream.send_all(b"0\r\n\r\n")
        return keep


async def _main(host: str, port: int) -> None:
    fake = FakeUpstream(record=False)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(partial(fake.serve, host, port))
            shown = f"[{host}]" if ":" in host else host
            print(f"fake upstream listening on http://{shown}:{bound}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main() -> None:
    """CLI entry point: run the fake standalone (for benchmarks) until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description="Fake AI provider for tests and benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    with suppress(KeyboardInterrupt):
        trio.run(_main, args.host, args.port)


if __name__ == "__main__":
    main()
