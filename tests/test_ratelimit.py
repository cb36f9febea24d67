"""Gateway rate limits over HTTP and WebSocket, in memory, under the test clock.

The limiter's clock is trio's (the mock clock here) plus the wall clock's
offset when the gateway starts, so windows stay aligned to the epoch. A test
moves to "60.5 s before a window boundary" by the wall clock: the limiter's
reading lags the test's by the few milliseconds the gateway took to start,
which the half second absorbs, so Retry-After is still exact.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import httpx
import pytest
import trio
from websockets.sync.client import ClientConnection

import gateway
from engine.plan import StepPlan
from engine.retry import Attempt
from server.executor import Committed
from server.hooks import Hooks
from server.responses import StoredResponse
from server.universal import Prepared
from tests.conftest import ACCOUNT, Stack, step
from tests.test_websocket import seed_create, talk, until_done


class StoredAnswers(Hooks):
    """Answers steps that carry `x-stored: 1` from memory, as a cache hit does."""

    async def before_attempt(
        self, prepared: Prepared, plan: StepPlan, attempt: Attempt
    ) -> Committed | None:
        if (b"x-stored", b"1") not in plan.headers:
            return None
        stored = StoredResponse(200, [(b"content-type", b"application/json")], [b'{"stored":1}'])
        return Committed(plan, attempt.number, stored, b"", False, False, cached=True)


@pytest.fixture
def gateway_settings(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(gateway, "features", lambda config, redis: [StoredAnswers()])
    return {
        "fixed": {"rate_limit": {"limit": 10, "interval": 600, "technique": "fixed"}},
        "sliding": {"rate_limit": {"limit": 10, "interval": 600, "technique": "sliding"}},
        "hourly": {"rate_limit": {"limit": 2, "interval": 3600, "technique": "sliding"}},
    }


async def to_before_boundary(interval: int, before: float) -> None:
    """Move the test clock to `before` seconds ahead of the next window boundary."""
    now = time.time()
    boundary = (math.floor(now / interval) + 1) * interval
    await trio.sleep(boundary - before - now)


async def burst(stack: Stack, gateway_id: str, n: int, **kw: Any) -> list[httpx.Response]:
    url = f"{stack.base}/v1/{ACCOUNT}/{gateway_id}"
    return [await stack.client.post(url, json=[step(**kw)]) for _ in range(n)]


def assert_rate_limited(response: httpx.Response, retry_after: int) -> None:
    assert response.status_code == 429
    body = response.json()
    assert body["error"] == [{"code": 2003, "message": "Rate limited"}]
    assert body["success"] is False and body["httpCode"] == 429
    assert response.headers["retry-after"] == str(retry_after)


async def test_fixed_window_edges(stack: Stack, autojump_clock: Any) -> None:
    await to_before_boundary(600, 60.5)  # "12:09" with windows 12:00-12:10, 12:10-12:20
    assert [r.status_code for r in await burst(stack, "fixed", 10)] == [200] * 10
    (refused,) = await burst(stack, "fixed", 1)
    assert_rate_limited(refused, 61)  # the window ends in 60.5 s
    await trio.sleep(120)  # "12:11": a new window
    assert [r.status_code for r in await burst(stack, "fixed", 10)] == [200] * 10
    assert_rate_limited((await burst(stack, "fixed", 1))[0], 541)
    assert len(stack.fake.requests) == 20  # refused requests never went upstream


async def test_sliding_window(stack: Stack, autojump_clock: Any) -> None:
    await to_before_boundary(600, 60.5)
    assert [r.status_code for r in await burst(stack, "sliding", 10)] == [200] * 10
    await trio.sleep(120)  # across the fixed boundary: still the same trailing 10 minutes
    assert_rate_limited((await burst(stack, "sliding", 1))[0], 8 * 60)
    await trio.sleep(8 * 60 - 1)
    assert_rate_limited((await burst(stack, "sliding", 1))[0], 1)
    await trio.sleep(1)  # the first ten are now exactly 10 minutes old
    assert [r.status_code for r in await burst(stack, "sliding", 10)] == [200] * 10
    # Other gateways have their own counters (or none).
    assert (await stack.client.post(stack.universal_url, json=[step()])).status_code == 200


async def test_answers_from_memory_count(stack: Stack, autojump_clock: Any) -> None:
    """A request answered without going upstream (a cache hit) still counts."""
    upstream, stored = (
        await burst(stack, "hourly", 1),
        await burst(stack, "hourly", 1, headers={"x-stored": "1"}),
    )
    assert [r.status_code for r in upstream + stored] == [200, 200]
    assert stored[0].json() == {"stored": 1}
    assert len(stack.fake.requests) == 1
    (refused,) = await burst(stack, "hourly", 1, headers={"x-stored": "1"})
    assert_rate_limited(refused, 3600)


async def test_every_surface_shares_the_limit(stack: Stack, autojump_clock: Any) -> None:
    """Provider paths and WebSocket events count against the same gateway limit."""
    native = f"{stack.base}/v1/{ACCOUNT}/hourly/openai/chat/completions"
    body = {"model": "gpt-4o-mini", "messages": []}
    first = await stack.client.post(native, json=body, headers={"authorization": "Bearer k"})
    assert first.status_code == 200

    def client(ws: ClientConnection) -> list[list[dict[str, Any]]]:
        ws.send(json.dumps(seed_create("allowed")))
        allowed = until_done(ws, "allowed")
        ws.send(json.dumps(seed_create("refused")))
        refused = until_done(ws, "refused")
        ws.send(json.dumps(seed_create("still-open")))  # the socket stays open
        return [allowed, refused, until_done(ws, "still-open")]

    url = f"ws://127.0.0.1:{stack.listening.ws_port}/v1/{ACCOUNT}/hourly/"
    (allowed,), (refused,), (again,) = await talk(url, client)
    assert allowed["type"] == "universal.created"
    assert refused["type"] == "universal.error"
    assert refused["metadata"] == {"eventId": "refused"}
    assert refused["error"]["error"] == [{"code": 2003, "message": "Rate limited"}]
    assert again["type"] == "universal.error"
    assert_rate_limited(await stack.client.post(native, json=body), 3600)
