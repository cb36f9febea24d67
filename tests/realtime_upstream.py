"""A provider's realtime WebSocket server for the tests: the `websockets` library's, in a thread.

It is an implementation independent of the gateway's (trio-websocket/wsproto),
on 127.0.0.1. Each connection records its handshake, the messages it got and
the close frame it received. What it does is chosen by the query string the
gateway passes through unchanged:

- (default)                 echo every message back, text as text, binary as binary
- `refuse=401`              answer the handshake with HTTP 401
- `close=4002&reason=done`  close with that code once `after` (default 1) messages came in
- `source=N&size=S`         first send N bytes of binary in S-byte messages, then echo
- `big=N`                   send one binary message of N bytes, then echo
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve


@dataclass
class UpstreamSession:
    """What one connection to the fake upstream saw."""

    path: str
    headers: dict[str, str]  # lower-case names
    offered: list[str]  # subprotocols the gateway offered
    received: list[str | bytes] = field(default_factory=list)
    close: tuple[int, str] | None = None  # the close frame received; None if none came
    sent_bytes: int = 0
    ended: threading.Event = field(default_factory=threading.Event)


class FakeRealtimeUpstream:
    def __init__(self) -> None:
        self.sessions: list[UpstreamSession] = []
        self.arrived = threading.Condition()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self._server = serve(
            self._handle,
            sock=sock,
            process_request=_refuse,
            select_subprotocol=lambda conn, offered: offered[0] if offered else None,
            compression=None,
            max_size=None,
            ping_interval=None,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.port = int(sock.getsockname()[1])
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait_sessions(self, count: int, timeout: float = 10) -> list[UpstreamSession]:
        """Block until `count` connections arrived (call from a worker thread)."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.sessions) >= count, timeout):
                raise TimeoutError(f"{len(self.sessions)} upstream sessions, expected {count}")
            return list(self.sessions)

    def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        offered = [
            p.strip()
            for v in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in v.split(",")
        ]
        session = UpstreamSession(
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.raw_items()},
            offered=offered,
        )
        with self.arrived:
            self.sessions.append(session)
            self.arrived.notify_all()
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}
        try:
            _behave(ws, session, query)
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                session.close = (exc.rcvd.code, exc.rcvd.reason)
        finally:
            session.ended.set()


def _behave(ws: ServerConnection, session: UpstreamSession, query: dict[str, str]) -> None:
    if "source" in query:
        total, size = int(query["source"]), int(query.get("size", 65536))
        while session.sent_bytes < total:
            chunk = min(size, total - session.sent_bytes)
            ws.send(pattern(session.sent_bytes, chunk))
            session.sent_bytes += chunk
    if "big" in query:
        ws.send(bytes(int(query["big"])))
    close_after = int(query.get("after", 1)) if "close" in query else None
    while True:
        message = ws.recv()
        session.received.append(message)
        if close_after is not None and len(session.received) >= close_after:
            ws.close(int(query["close"]), query.get("reason", ""))
            ws.recv()  # raises ConnectionClosed once the gateway answers the close
        ws.send(message)


def _refuse(ws: ServerConnection, request: Request) -> Response | None:
    query = parse_qs(urlsplit(request.path).query)
    if "refuse" in query:
        return ws.respond(HTTPStatus(int(query["refuse"][0])), "refused by the fake upstream\n")
    return None


_CYCLE = bytes(range(251))


def pattern(offset: int, size: int) -> bytes:
    """Bytes [offset, offset + size) of the `source` stream: 0..250 repeated."""
    start = offset % len(_CYCLE)
    return (_CYCLE * (size // len(_CYCLE) + 2))[start : start + size]
