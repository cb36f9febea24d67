"""The h11 connection pool against a real fake upstream: reuse, staleness, cancellation."""

from __future__ import annotations

import orjson
import pytest
import trio

from engine.urls import Origin
from server.fake_upstream import FakeUpstream
from server.upstream import ConnectionPool, UpstreamUnavailable

BODY = orjson.dumps({"model": "m", "messages": []})


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeUpstream:
    fake = FakeUpstream()
    await nursery.start(fake.serve)
    return fake


async def call(pool: ConnectionPool, fake: FakeUpstream, *headers: tuple[bytes, bytes]) -> bytes:
    origin = Origin("http", "127.0.0.1", fake.port)
    response = await pool.request(
        origin,
        b"POST",
        b"/v1/chat/completions",
        [(b"content-type", b"application/json"), *headers],
        BODY,
    )
    assert response.status == 200
    return await response.read_all(1 << 20)


async def test_keep_alive_connections_are_reused(fake: FakeUpstream) -> None:
    pool = ConnectionPool()
    for _ in range(5):
        assert b"Hello" in await call(pool, fake)
    assert fake.connections == 1
    await pool.aclose()


async def test_stale_idle_connection_is_retried_once_on_a_fresh_one(fake: FakeUpstream) -> None:
    pool = ConnectionPool()
    # The upstream closes the connection right after answering, as idle servers do.
    await call(pool, fake, (b"x-fake-close", b"1"))
    await trio.testing.wait_all_tasks_blocked()
    assert b"Hello" in await call(pool, fake)  # the stale socket is not the caller's problem
    assert fake.connections == 2
    assert len(fake.requests) == 2
    await pool.aclose()


async def test_cancelled_exchange_never_reuses_its_connection(fake: FakeUpstream) -> None:
    pool = ConnectionPool()
    origin = Origin("http", "127.0.0.1", fake.port)
    with trio.move_on_after(0.2):
        await pool.request(
            origin, b"POST", b"/v1/chat/completions", [(b"x-fake-delay-ms", b"5000")], BODY
        )
    assert pool.idle_count(origin) == 0
    response = await pool.request(origin, b"POST", b"/v1/chat/completions", [], BODY)
    # A half-read response is closed, not pooled.
    await response.aclose()
    assert pool.idle_count(origin) == 0
    await call(pool, fake)
    assert fake.connections == 3
    assert pool.idle_count(origin) == 1
    await pool.aclose()


async def test_failures_map_to_one_exception(fake: FakeUpstream) -> None:
    pool = ConnectionPool()
    with pytest.raises(UpstreamUnavailable):
        await call(pool, fake, (b"x-fake-drop", b"1"))
    with pytest.raises(UpstreamUnavailable):
        await pool.request(Origin("http", "127.0.0.1", 9), b"GET", b"/", [], b"")
    await pool.aclose()


async def test_pool_bounds_concurrency_per_origin(fake: FakeUpstream) -> None:
    pool = ConnectionPool(max_connections=3)
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(call, pool, fake, (b"x-fake-delay-ms", b"50"))
    assert fake.connections == 3
    assert len(fake.requests) == 10
    await pool.aclose()
