"""Opening a provider's realtime WebSocket: trio-websocket's client over a stream we own.

`trio_websocket.open_websocket` leaves the socket of a refused handshake open
(it never gets the connection object to close), so a provider answering 401
would cost the gateway a socket until garbage collection. Here the TCP (and
TLS) stream is opened and closed by us, and trio-websocket's
`wrap_client_stream` speaks the protocol over it.

Error handling: every way the opening can fail is mapped, once, to
`ProviderSocketError`, which carries the close code and reason the client gets.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, wrap_client_stream

from engine.realtime import BAD_GATEWAY, refused
from engine.urls import Origin


class ProviderSocketError(Exception):
    """The provider's WebSocket could not be opened; `code` and `reason` are for the client."""

    def __init__(self, kind: str, code: int, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.code, self.reason = kind, code, reason


@asynccontextmanager
async def open_provider_socket(
    origin: Origin,
    target: str,
    *,
    ssl_context: ssl.SSLContext | None,
    subprotocols: Sequence[str],
    headers: list[tuple[bytes, bytes]],
    max_message: int,
    receive_bytes: int,
    queued_messages: int,
    handshake_within: float,
) -> AsyncIterator[WebSocketConnection]:
    """An open WebSocket to `origin` + `target`; closed, socket included, on the way out.

    The body runs inside the connection's nursery: its reader task lives there.
    Raises ProviderSocketError when the TCP connect, the TLS or WebSocket
    handshake fails or takes longer than `handshake_within` seconds.
    """
    deadline = trio.current_time() + handshake_within  # the opening only, not the body
    stream = await _connect(origin, ssl_context, deadline, handshake_within)
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_at(deadline):
                ws = await wrap_client_stream(
                    nursery,
                    stream,  # type: ignore[arg-type]
                    origin.host_header,
                    target,
                    subprotocols=subprotocols or None,
                    extra_headers=headers,
                    message_queue_size=queued_messages,
                    max_message_size=max_message,
                    receive_buffer_size=receive_bytes,
                )
            try:
                yield ws
            finally:
                nursery.cancel_scope.cancel()  # the reader task; the caller closed the socket
    except BaseExceptionGroup as group:  # the nursery wraps the reader's and the body's errors
        rejected = group.subgroup(ConnectionRejected)
        if rejected is not None:
            status = _first(rejected).status_code
            raise ProviderSocketError("refused", *refused(status)) from None
        if group.subgroup(trio.TooSlowError) is not None:
            raise _timed_out(handshake_within) from None
        raise
    finally:
        await trio.aclose_forcefully(stream)


async def _connect(
    origin: Origin, ssl_context: ssl.SSLContext | None, deadline: float, within: float
) -> trio.abc.Stream:
    """TCP, and TLS for wss: done here, so a certificate problem is reported at once."""
    try:
        with trio.fail_at(deadline):
            tcp = await trio.open_tcp_stream(origin.host, origin.port)
    except trio.TooSlowError:
        raise _timed_out(within) from None
    except OSError as exc:
        raise ProviderSocketError(
            "unreachable", BAD_GATEWAY, f"upstream unreachable: {exc}"
        ) from None
    if ssl_context is None:
        return tcp
    tls = trio.SSLStream(tcp, ssl_context, server_hostname=origin.host, https_compatible=True)
    try:
        with trio.fail_at(deadline):
            await tls.do_handshake()
    except trio.TooSlowError:
        await trio.aclose_forcefully(tcp)
        raise _timed_out(within) from None
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(tcp)
        reason = f"upstream TLS handshake failed: {exc.__cause__ or exc}"
        raise ProviderSocketError("unreachable", BAD_GATEWAY, reason) from None
    return tls


def _timed_out(timeout: float) -> ProviderSocketError:
    reason = f"upstream did not complete the WebSocket handshake in {timeout:g} s"
    return ProviderSocketError("unreachable", BAD_GATEWAY, reason)


def _first(group: BaseExceptionGroup[ConnectionRejected]) -> ConnectionRejected:
    inner = group.exceptions[0]
    return inner if isinstance(inner, ConnectionRejected) else _first(inner)  # type: ignore[arg-type]
