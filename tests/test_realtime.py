"""Realtime WebSocket passthrough, end to end: `websockets` client -> gateway -> fake provider.

The fake provider (`tests/realtime_upstream.py`) is the `websockets` library's
server in a thread; the client is the `websockets` synchronous client in a
worker thread, so the gateway keeps running in the test's trio loop. Tests
about time (idle timeout, shutdown) use trio-websocket as the client, in the
loop, under a mock clock that jumps only after half a second of real
idleness, so the provider's thread always answers before the clock moves.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import socket
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed as TrioClosed
from trio_websocket import open_websocket_url
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

import gateway
from engine.config import load_config
from engine.errors import GatewayError
from engine.realtime import RealtimeSession
from gateway import Listening, serve
from providers import is_built_in
from server.hooks import Hooks
from tests.conftest import ACCOUNT
from tests.realtime_upstream import FakeRealtimeUpstream, UpstreamSession, pattern

TOKEN = "GATEWAY-TOKEN-123"
GATEWAY = "voice"


@dataclass
class Stack:
    fake: FakeRealtimeUpstream
    listening: Listening
    shutdown: trio.Event

    def url(self, tail: str, gateway: str = GATEWAY) -> str:
        return f"ws://127.0.0.1:{self.listening.ws_port}/v1/{ACCOUNT}/{gateway}/{tail}"

    async def upstream(self, count: int = 1) -> list[UpstreamSession]:
        return await trio.to_thread.run_sync(self.fake.wait_sessions, count)


@pytest.fixture
def server_settings() -> dict[str, Any]:
    return {}


@asynccontextmanager
async def open_stack(
    nursery: trio.Nursery, server_settings: dict[str, Any]
) -> AsyncIterator[Stack]:
    fake = FakeRealtimeUpstream()
    up = f"http://127.0.0.1:{fake.start()}"
    providers = {
        slug: {"base_url": up}
        for slug in ("google-ai-studio", "cartesia", "elevenlabs", "fal", "deepgram")
    }
    providers |= {
        "openai": {"base_url": f"{up}/v1"},
        "workers-ai": {"base_url": f"{up}/client/v4/accounts/{{account_id}}/ai"},
        "custom-rt": {"base_url": f"{up}/custom"},
        "custom-dead": {"base_url": "http://127.0.0.1:9/v1"},  # nothing listens: refused
        "custom-tls": {"base_url": up.replace("http:", "https:")},  # wss to a plain server
    }
    server = {"http_port": 0, "ws_port": 0, "grace_period": 2, **server_settings}
    gateways = {
        "authed": {"token": TOKEN},
        "keyed": {
            "token": TOKEN,
            "keys": {"openai": {"default": "sk-stored", "other": "sk-other"}},
            "rate_limit": {"limit": 2, "interval": 3600},
        },
    }
    data = {"server": server, "providers": providers, "gateways": gateways}
    config = load_config(data, is_built_in)
    shutdown = trio.Event()
    listening = await nursery.start(
        lambda task_status: serve(config, shutdown=shutdown, task_status=task_status)
    )
    try:
        yield Stack(fake, listening, shutdown)
    finally:
        shutdown.set()
        await trio.to_thread.run_sync(fake.stop)


@pytest.fixture
async def stack(nursery: trio.Nursery, server_settings: dict[str, Any]) -> AsyncIterator[Stack]:
    async with open_stack(nursery, server_settings) as stack:
        yield stack


@pytest.fixture
def slow_autojump_clock() -> trio.testing.MockClock:
    """Jumps only after 0.5 s of real idleness: the provider's thread answers first."""
    return trio.testing.MockClock(autojump_threshold=0.5)


async def talk(url: str, client: Callable[[ClientConnection], Any], **kwargs: Any) -> Any:
    def run() -> Any:
        with connect(url, open_timeout=10, close_timeout=5, max_size=None, **kwargs) as ws:
            return client(ws)

    return await trio.to_thread.run_sync(run)


def echo(ws: ClientConnection, *messages: str | bytes) -> list[str | bytes]:
    got = []
    for message in messages:
        ws.send(message)
        got.append(ws.recv(timeout=10))
    return got


def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """Read until the gateway closes; the close frame the client received."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


def answered(ws: ClientConnection) -> str | None:
    """Wait until the upstream answers (an echo); the subprotocol the gateway chose."""
    echo(ws, "hi")
    return ws.subprotocol


async def ended(session: UpstreamSession) -> UpstreamSession:
    assert await trio.to_thread.run_sync(session.ended.wait, 10)
    return session


@pytest.mark.parametrize(
    ("tail", "upstream_path"),
    [
        ("openai?model=gpt-4o-realtime-preview", "/v1/realtime?model=gpt-4o-realtime-preview"),
        ("openai/realtime?model=m", "/v1/realtime?model=m"),
        (
            "google?api_key=KEY",
            "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        ),
        (
            "cartesia?cartesia_version=2024-06-10&api_key=KEY",
            "/tts/websocket?cartesia_version=2024-06-10&api_key=KEY",
        ),
        ("elevenlabs?agent_id=A1", "/v1/convai/conversation?agent_id=A1"),
        ("fal/fal-ai/fast-lcm-diffusion", "/fal-ai/fast-lcm-diffusion"),
        (
            "workers-ai?model=@cf/deepgram/nova-3&encoding=linear16&sample_rate=16000",
            f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/deepgram/nova-3"
            "?encoding=linear16&sample_rate=16000",
        ),
        ("deepgram/v1/listen?model=nova-3", "/v1/listen?model=nova-3"),
        ("deepgram?model=nova-3", "/v1/listen?model=nova-3"),
        ("custom-rt/stream?x=1", "/custom/stream?x=1"),
    ],
)
async def test_url_mapping_per_provider(stack: Stack, tail: str, upstream_path: str) -> None:
    assert await talk(stack.url(tail), lambda ws: echo(ws, "ping")) == ["ping"]
    (session,) = await stack.upstream()
    assert session.path == upstream_path


async def test_fifty_text_messages_each_way_in_order(stack: Stack) -> None:
    sent = [f"message {i} " + "é" * i for i in range(50)]

    def client(ws: ClientConnection) -> list[str | bytes]:
        for message in sent:  # all at once: nothing waits for its echo
            ws.send(message)
        return [ws.recv(timeout=10) for _ in sent]

    assert await talk(stack.url("openai?model=m"), client) == sent
    (session,) = await stack.upstream()
    assert session.received == sent


async def test_five_megabytes_of_binary_both_ways_byte_exact(stack: Stack) -> None:
    sizes = [1, 125, 126, 127, 65535, 65536, 65537, 1 << 20]
    sizes.append(5 * (1 << 20) - sum(sizes))
    payloads = [os.urandom(size) for size in sizes]
    back = await talk(stack.url("openai?model=m"), lambda ws: echo(ws, *payloads))
    assert back == payloads  # upstream -> client, byte for byte
    (session,) = await stack.upstream()
    assert session.received == payloads  # client -> upstream, byte for byte
    assert sum(map(len, back)) == 5 * (1 << 20)


async def test_credentials_go_upstream_as_the_provider_takes_them(stack: Stack) -> None:
    headers = {
        "Authorization": "Bearer sk-openai",
        "OpenAI-Beta": "realtime=v1",
        "cf-aig-authorization": f"Bearer {TOKEN}",
        "cf-aig-metadata": '{"user": "u1"}',
        "Cookie": "gateway-session=1",
    }
    protocols = ["realtime", "openai-beta.realtime-v1"]
    browser = ["xi-api-key.XI-KEY", f"cf-aig-authorization.{TOKEN}"]
    fal_browser = ["fal-api-key.FAL-KEY", f"cf-aig-authorization.{TOKEN}"]
    # One at a time, each until its upstream answered, so they arrive in this order.
    for tail, kwargs, chosen in [
        ("openai?model=m", {"additional_headers": headers, "subprotocols": protocols}, "realtime"),
        ("elevenlabs?agent_id=A1", {"subprotocols": browser}, "xi-api-key.XI-KEY"),
        ("fal/fal-ai/fast-lcm-diffusion", {"subprotocols": fal_browser}, "fal-api-key.FAL-KEY"),
        ("google?api_key=G-KEY", {"additional_headers": headers}, None),
    ]:
        assert await talk(stack.url(tail, "authed"), answered, **kwargs) == chosen
    openai, elevenlabs, fal, google = await stack.upstream(4)
    assert openai.headers["authorization"] == "Bearer sk-openai"
    assert openai.headers["openai-beta"] == "realtime=v1"
    assert openai.offered == protocols
    assert "cookie" not in openai.headers
    assert elevenlabs.headers["xi-api-key"] == "XI-KEY"
    assert elevenlabs.offered == []
    assert fal.headers["authorization"] == "Key FAL-KEY"
    assert google.headers["x-goog-api-key"] == "G-KEY"
    assert "api_key" not in google.path
    for session in (openai, elevenlabs, fal, google):
        assert not [name for name in session.headers if name.startswith("cf-aig-")]
        assert TOKEN not in repr((session.headers, session.offered, session.path))


async def test_gateway_token_is_checked_at_the_handshake(stack: Stack) -> None:
    with pytest.raises(InvalidStatus) as info:
        await talk(stack.url("openai?model=m", "authed"), lambda ws: None)
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body)["error"][0]["code"] == 2009
    with pytest.raises(InvalidStatus) as info:
        await talk(stack.url("nope?model=m"), lambda ws: None)
    assert info.value.response.status_code == 400
    assert json.loads(info.value.response.body)["error"][0]["code"] == 2008
    assert stack.fake.sessions == []


async def test_browser_gets_its_first_subprotocol_back(stack: Stack) -> None:
    # A browser fails the handshake unless the answer names one of its offers.
    offered = [f"cf-aig-authorization.{TOKEN}", "realtime", "openai-insecure-api-key.sk-x"]

    def client(ws: ClientConnection) -> str | None:
        echo(ws, "hi")
        return ws.response.headers.get("Sec-WebSocket-Protocol")

    url = stack.url("openai?model=m", "authed")
    assert (
        await talk(url, client, subprotocols=offered, origin="http://localhost:3000") == offered[0]
    )
    (session,) = await stack.upstream()
    assert session.offered == offered[1:]


async def test_close_codes_travel_both_ways(stack: Stack) -> None:
    def client_closes(ws: ClientConnection) -> None:
        echo(ws, "hello")
        ws.close(4001, "client bye")

    await talk(stack.url("openai?model=m"), client_closes)
    (first,) = await stack.upstream()
    assert (await ended(first)).close == (4001, "client bye")

    def upstream_closes(ws: ClientConnection) -> tuple[int, str]:
        ws.send("last words")
        return closed_with(ws)

    url = stack.url("openai?model=m&close=4002&reason=done")
    assert await talk(url, upstream_closes) == (4002, "done")


async def test_client_gone_closes_the_upstream_at_once(stack: Stack) -> None:
    def client(ws: ClientConnection) -> None:
        echo(ws, "hello")
        ws.socket.shutdown(socket.SHUT_RDWR)  # no close frame: the client just vanishes

    await talk(stack.url("openai?model=m"), client)
    (session,) = await stack.upstream()
    assert (await ended(session)).close == (1001, "client went away")


async def test_upstream_refusal_and_unreachable_upstream(stack: Stack) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        url = stack.url("openai?model=m&refuse=401")
        code, reason = await talk(url, closed_with)
        assert (code, reason) == (4401, "upstream refused the WebSocket handshake: HTTP 401")
        assert await talk(stack.url("openai?model=m&refuse=429"), closed_with) == (
            4429,
            "upstream refused the WebSocket handshake: HTTP 429",
        )
        gc.collect()  # a refused upstream socket left open would be collected, and complain, now
    upstream = f"raddr=('127.0.0.1', {stack.fake.port})"
    assert not [w for w in seen if upstream in str(w.message)]
    code, reason = await talk(stack.url("custom-dead/stream"), closed_with)
    assert code == 1014
    assert reason.startswith("upstream unreachable: ")
    code, reason = await talk(stack.url("custom-tls/stream"), closed_with)
    assert code == 1014
    assert reason.startswith("upstream TLS handshake failed: ")


async def test_slow_client_holds_back_the_upstream_instead_of_filling_memory(
    stack: Stack,
) -> None:
    # The upstream pushes 96 MB at a client that reads nothing for a while. With
    # backpressure its sends stall once the sockets' buffers and the gateway's
    # one message per direction are full; a gateway that buffered would take it all.
    total, size = 96 << 20, 1 << 20
    url = stack.url(f"openai?model=m&source={total}&size={size}")
    go = threading.Event()

    def client() -> int:
        sock = socket.create_connection(("127.0.0.1", stack.listening.ws_port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        with connect(url, sock=sock, max_size=None, max_queue=1) as ws:
            assert go.wait(60)
            offset = 0
            while offset < total:
                chunk = ws.recv(timeout=10)
                assert chunk == pattern(offset, len(chunk))
                offset += len(chunk)
            return offset

    received: list[int] = []

    async def run_client() -> None:
        received.append(await trio.to_thread.run_sync(client))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_client)
        try:
            (session,) = await stack.upstream()
            sent, still = -1, 0
            for _ in range(300):  # bounded: 30 s at most
                await trio.sleep(0.1)
                still = still + 1 if session.sent_bytes == sent else 0
                sent = session.sent_bytes
                if still == 5:  # no progress for half a second: stalled
                    break
            assert still == 5
            assert 0 < sent < total // 3
        finally:
            go.set()  # now the client reads: everything arrives, in order, byte-exact
    assert received == [total]


async def test_twenty_concurrent_sessions(stack: Stack) -> None:
    all_open = threading.Barrier(20, timeout=10)
    results: dict[int, list[str | bytes]] = {}

    def client(n: int) -> Callable[[ClientConnection], None]:
        def run(ws: ClientConnection) -> None:
            all_open.wait()  # every session is live before any talks
            results[n] = echo(ws, *(f"session {n} message {i}" for i in range(10)))

        return run

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(talk, stack.url(f"openai?model=m&n={n}"), client(n))
    assert results == {n: [f"session {n} message {i}" for i in range(10)] for n in range(20)}
    assert len(await stack.upstream(20)) == 20


@pytest.mark.parametrize("server_settings", [{"ws_max_frame_bytes": 65536}])
async def test_frames_over_the_limit_close_with_1009(stack: Stack) -> None:
    def too_big(ws: ClientConnection) -> tuple[int, str]:
        echo(ws, bytes(65536))  # at the limit: relayed
        ws.send(bytes(65537))
        return closed_with(ws)

    assert (await talk(stack.url("openai?model=m"), too_big))[0] == 1009
    (session,) = await stack.upstream()
    assert (await ended(session)).close == (
        1009,
        "client message larger than ws_max_frame_bytes (65536 bytes)",
    )
    url = stack.url("openai?model=m&big=70000")
    assert await talk(url, closed_with) == (
        1009,
        "upstream message larger than ws_max_frame_bytes (65536 bytes)",
    )


@pytest.mark.parametrize("server_settings", [{"realtime_max_sessions": 2}])
async def test_concurrent_sessions_per_gateway_are_capped(stack: Stack) -> None:
    release = threading.Event()
    opened = threading.Barrier(3, timeout=10)

    def hold(ws: ClientConnection) -> None:
        echo(ws, "hi")
        opened.wait()
        release.wait(10)

    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(talk, stack.url("openai?model=m"), hold)
        await trio.to_thread.run_sync(opened.wait)
        code, reason = await talk(stack.url("openai?model=m"), closed_with)
        assert code == 1013
        assert reason == f"too many realtime sessions on gateway {GATEWAY} (limit 2)"
        # The cap is per gateway: another one still opens.
        assert await talk(stack.url("openai?model=m", "other"), lambda ws: echo(ws, "x")) == ["x"]
        release.set()
    assert await talk(stack.url("openai?model=m"), lambda ws: echo(ws, "y")) == ["y"]


async def test_idle_session_is_closed_on_both_sides(
    stack: Stack, slow_autojump_clock: trio.testing.MockClock
) -> None:
    async with open_websocket_url(stack.url("openai?model=m")) as ws:
        start = trio.current_time()
        await trio.sleep(200)
        await ws.send_message("still here")
        assert await ws.get_message() == "still here"
        with pytest.raises(TrioClosed) as info:
            await ws.get_message()
        assert (info.value.reason.code, info.value.reason.reason) == (1000, "idle timeout")
        assert trio.current_time() - start == pytest.approx(200 + 270, abs=1)
    (session,) = await stack.upstream()
    assert (await ended(session)).close == (1000, "idle timeout")


async def test_shutdown_closes_sessions_with_1001_after_the_grace_period(
    stack: Stack, slow_autojump_clock: trio.testing.MockClock
) -> None:
    async with open_websocket_url(stack.url("openai?model=m")) as ws:
        await ws.send_message("before")
        assert await ws.get_message() == "before"
        stack.shutdown.set()
        start = trio.current_time()
        await trio.sleep(1)  # inside the 2 s grace period the session still works
        await ws.send_message("during")
        assert await ws.get_message() == "during"
        with pytest.raises(TrioClosed) as info:
            await ws.get_message()
        assert (info.value.reason.code, info.value.reason.reason) == (1001, "gateway shutting down")
        assert trio.current_time() - start == pytest.approx(2, abs=0.1)
    (session,) = await stack.upstream()
    assert (await ended(session)).close == (1001, "gateway shutting down")


class _Limiter(Hooks):
    """What a rate limit, stored keys and a request log do with the session seams."""

    def __init__(self) -> None:
        self.closed: list[RealtimeSession] = []
        self.recorded = trio.Semaphore(0)

    async def realtime_open(self, session: RealtimeSession) -> None:
        if session.ctx.gateway_id == "limited":
            raise GatewayError(429, 2003)
        if not any(name == b"authorization" for name, _ in session.headers):
            session.headers.append(session.plan.spec.auth.inject("stored-key"))

    def realtime_closed(self, session: RealtimeSession) -> None:
        self.closed.append(session)
        self.recorded.release()


async def test_session_seams_refuse_add_a_key_and_see_the_record(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = _Limiter()
    monkeypatch.setattr(gateway, "features", lambda config, redis: [limiter])
    caplog.set_level(logging.INFO, "gateway.access")

    def client(ws: ClientConnection) -> None:
        echo(ws, "abc", b"12345")
        ws.close(4000, "done")

    async with open_stack(nursery, {}) as stack:
        with pytest.raises(InvalidStatus) as info:
            await talk(stack.url("openai?model=m", "limited"), lambda ws: None)
        assert info.value.response.status_code == 429
        assert json.loads(info.value.response.body)["error"][0]["code"] == 2003
        await talk(stack.url("openai?model=m"), client)
        await talk(stack.url("google?api_key=SECRET-KEY"), client)
        openai, _ = await stack.upstream(2)
        assert openai.headers["authorization"] == "Bearer stored-key"
        with trio.fail_after(10):
            for _ in range(3):
                await limiter.recorded.acquire()
    rejected, *done = limiter.closed
    assert rejected.ended_by == "rejected"
    (record,) = [r for r in done if r.plan.provider == "openai"]
    assert (record.sent.frames, record.sent.bytes) == (2, 8)
    assert (record.received.frames, record.received.bytes) == (2, 8)
    assert (record.client_close, record.upstream_close, record.ended_by) == (
        (4000, "done"),
        (4000, "done"),
        "client",
    )
    assert record.plan.model == "m"
    assert "sent 2 frames 8 B, received 2 frames 8 B; ended by client" in caplog.text
    assert "SECRET-KEY" not in caplog.text  # the query is never logged


async def test_stored_keys_and_rate_limit_apply_to_sessions(stack: Stack) -> None:
    """A session gets the gateway's stored key, and counts against its rate limit."""
    auth = {"cf-aig-authorization": f"Bearer {TOKEN}"}

    def client(ws: ClientConnection) -> None:
        echo(ws, "hello")

    url = stack.url("openai?model=m", "keyed")
    await talk(url, client, additional_headers=auth)
    await talk(url, client, additional_headers={**auth, "cf-aig-byok-alias": "other"})
    with pytest.raises(InvalidStatus) as info:
        await talk(url, client, additional_headers=auth)
    assert info.value.response.status_code == 429
    assert json.loads(info.value.response.body)["error"][0]["code"] == 2003
    first, second = await stack.upstream(2)
    assert first.headers["authorization"] == "Bearer sk-stored"
    assert second.headers["authorization"] == "Bearer sk-other"
