"""The upstream client: a bounded keep-alive connection pool on h11 over trio streams.

One pool serves every upstream call of the process. Foreign exceptions (OSError,
trio stream errors, h11 protocol errors, TLS errors) are mapped once, here, to
`UpstreamUnavailable`, so the executor deals with one failure type.

Resource handling:
  A connection returns to the pool only after a complete response was read.
  A cancelled, failed or abandoned exchange closes its connection.
"""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import Sequence

import h11
import trio

from engine.urls import Origin

READ_SIZE = 64 * 1024
# Idle keep-alive connections older than this are not reused: many servers
# close idle connections after 5-60 s and a stale socket costs a retry.
IDLE_TTL = 30.0


class UpstreamUnavailable(Exception):
    """The upstream could not be reached, or broke the exchange."""


class _Mapped:
    """Maps the foreign exceptions of one exchange to UpstreamUnavailable.

    A plain class rather than @contextmanager: it sits on the hot path.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or not isinstance(exc, _FOREIGN):
            return
        if isinstance(exc, h11.ProtocolError):
            raise UpstreamUnavailable(f"protocol error: {exc}") from None
        if isinstance(exc, trio.TooSlowError):
            raise UpstreamUnavailable("connect timed out") from None
        raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}") from None


_FOREIGN = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    h11.ProtocolError,
    trio.TooSlowError,
)
_mapped = _Mapped()


class Connection:
    __slots__ = ("h11", "idle_since", "origin", "received", "stream")

    def __init__(self, origin: Origin, stream: trio.abc.Stream) -> None:
        self.origin = origin
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
        self.idle_since = 0.0
        self.received = False  # any byte of the current response yet?

    async def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.stream.receive_some(READ_SIZE)
            except (OSError, trio.BrokenResourceError):
                if self.received:
                    raise
                data = b""
            if not data and not self.received:
                # EOF or reset where a response was due: keep it distinct so the
                # pool can retry a stale keep-alive socket on a fresh one.
                raise _ClosedBeforeResponse
            self.received = True
            self.h11.receive_data(data)


class _ClosedBeforeResponse(Exception):
    pass


class Response:
    """A response whose head has arrived; the body is read with `receive_some`."""

    __slots__ = ("_conn", "_done", "_pool", "headers", "status")

    def __init__(
        self,
        pool: ConnectionPool,
        conn: Connection,
        status: int,
        headers: Sequence[tuple[bytes, bytes]],
    ) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
        self._done = False
        self.status = status
        self.headers = headers  # lower-cased names, as h11 gives them

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def complete(self) -> bool:
        """True once the whole body has been received (the connection is back in the pool)."""
        return self._done

    async def receive_some(self) -> bytes:
        """The body bytes that have arrived, waiting only when none have; b"" at the end.

        Everything already buffered is returned at once, so a small body that came
        with the head is one call, and `complete` tells the caller no more follows.
        """
        conn = self._conn
        if conn is None:
            return b""
        parts: list[bytes] = []
        try:
            with _mapped:
                while True:
                    event = conn.h11.next_event()
                    if event is h11.NEED_DATA:
                        if parts:
                            break
                        conn.h11.receive_data(await conn.stream.receive_some(READ_SIZE))
                    elif type(event) is h11.Data:
                        parts.append(event.data)
                    elif type(event) is h11.EndOfMessage:
                        self._done = True
                        break
                    else:
                        raise UpstreamUnavailable(f"unexpected event {type(event).__name__}")
        except BaseException:
            await self._discard()
            raise
        if self._done:
            await self.aclose()
        return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)

    async def read_all(self, limit: int) -> bytes:
        body = bytearray()
        while chunk := await self.receive_some():
            body += chunk
            if len(body) > limit:
                await self.aclose()
                raise UpstreamUnavailable(f"response body over {limit} bytes")
        return bytes(body)

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool._release(conn, reuse=False)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool._release(conn, reuse=self._done)


class ConnectionPool:
    """Bounded keep-alive connections per origin.

    `max_connections` caps concurrent exchanges per origin; callers beyond it
    wait for a slot rather than opening unbounded sockets.
    """

    def __init__(
        self,
        *,
        max_connections: int = 256,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._ssl_context = ssl_context
        self._idle: dict[Origin, deque[Connection]] = {}
        self._slots: dict[Origin, trio.Semaphore] = {}

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # The system trust store, as curl and browsers use.
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def idle_count(self, origin: Origin) -> int:
        return len(self._idle.get(origin, ()))

    async def request(
        self,
        origin: Origin,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> Response:
        """Send one request and wait for the response head.

        Raises UpstreamUnavailable. A pooled connection the upstream had
        already closed (no response byte received) is retried once on a
        fresh connection.
        """
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = trio.Semaphore(self.max_connections)
        try:
            slots.acquire_nowait()  # the common case: a free slot, no scheduler pass
        except trio.WouldBlock:
            await slots.acquire()
        try:
            with _mapped:  # h11 refuses what it cannot send: a failed call, not a crash
                request = h11.Request(
                    method=method,
                    target=target,
                    headers=[
                        (b"host", origin.host_header.encode()),
                        (b"content-length", str(len(body)).encode()),
                        *headers,
                    ],
                )
            conn = await self._checkout(origin)
            if conn is not None:
                try:
                    return await self._exchange(conn, request, body)
                except _ClosedBeforeResponse:
                    pass  # stale keep-alive socket: one more try on a fresh one
            conn = await self._connect(origin)
            try:
                return await self._exchange(conn, request, body)
            except _ClosedBeforeResponse:
                raise UpstreamUnavailable("connection closed before response") from None
        except BaseException:
            slots.release()
            raise

    async def _checkout(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        now = trio.current_time()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < IDLE_TTL:
                return conn
            await trio.aclose_forcefully(conn.stream)
        return None

    async def _connect(self, origin: Origin) -> Connection:
        with _mapped:
            with trio.fail_after(self.connect_timeout):
                stream: trio.abc.Stream = await trio.open_tcp_stream(origin.host, origin.port)
            if origin.scheme == "https":
                tls = trio.SSLStream(stream, self.ssl_context, server_hostname=origin.host)
                try:
                    with trio.fail_after(self.connect_timeout):
                        await tls.do_handshake()
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
                stream = tls
        return Connection(origin, stream)

    async def _exchange(self, conn: Connection, request: h11.Request, body: bytes) -> Response:
        try:
            with _mapped:
                conn.received = False
                data = conn.h11.send(request)
                if body:
                    data += conn.h11.send(h11.Data(data=body))
                data += conn.h11.send(h11.EndOfMessage())
                try:
                    await conn.stream.send_all(data)
                except (trio.BrokenResourceError, OSError):
                    raise _ClosedBeforeResponse from None
                while True:
                    event = await conn.next_event()
                    if type(event) is h11.Response:
                        return Response(self, conn, event.status_code, event.headers)
                    if type(event) is h11.InformationalResponse:
                        continue
                    raise UpstreamUnavailable(f"unexpected event {type(event).__name__}")
        except BaseException:
            await trio.aclose_forcefully(conn.stream)
            raise

    async def _release(self, conn: Connection, *, reuse: bool) -> None:
        self._slots[conn.origin].release()
        if reuse and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            try:
                conn.h11.start_next_cycle()
            except h11.LocalProtocolError:
                reuse = False
            else:
                conn.idle_since = trio.current_time()
                self._idle.setdefault(conn.origin, deque()).append(conn)
                return
        await trio.aclose_forcefully(conn.stream)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                await trio.aclose_forcefully(idle.pop().stream)
