"""Rate limits kept in a real redis-server: exact, shared between gateway processes, and
what happens when Redis goes away.

Two gateways run as users start them (`python gateway.py --config ...`), both
pointed at one Redis; the fake upstream runs in the test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from engine.config import RateLimit, load_config
from engine.errors import GatewayError
from providers import is_built_in
from server.controls import Controls
from server.fake_upstream import FakeUpstream
from stores.ratelimit import MemoryRateLimits, RedisRateLimits
from stores.redis import open_redis
from tests.conftest import ACCOUNT, RedisServer, Stack, step

ROOT = Path(__file__).resolve().parent.parent


# --- the Redis store follows the same arithmetic as the memory one -----------------


@pytest.mark.parametrize("technique", ["fixed", "sliding"])
async def test_redis_and_memory_decide_alike(redis_url: str, technique: str) -> None:
    rule = RateLimit(3, 10, technique)
    now = [1_767_225_594.0]  # 6 s before a 10 s boundary
    memory = MemoryRateLimits(lambda: now[0])
    async with open_redis(redis_url) as redis:
        assert redis is not None
        shared = RedisRateLimits(redis, lambda: now[0])
        seen: list[tuple[object, object]] = []
        for step_s in (0, 0, 0, 0, 2, 2.5, 1.5, 0, 4, 0.25, 0, 0):
            now[0] += step_s
            seen.append((await memory.hit("g", rule), await shared.hit("g", rule)))
    assert all(a == b for a, b in seen), seen
    decisions = [(d.allowed, d.retry_after) for d, _ in seen]
    if technique == "fixed":
        assert decisions[:5] == [(True, 0)] * 3 + [(False, 6), (False, 4)]
    else:
        assert decisions[:5] == [(True, 0)] * 3 + [(False, 10), (False, 8)]


# --- two gateway processes, one Redis ------------------------------------------------


@asynccontextmanager
async def gateway_process(config: Path, log: Path) -> AsyncIterator[str]:
    """A gateway started from the command line; yields its base URL once it listens."""
    with open(log, "wb") as out:  # noqa: ASYNC230 (a local file, opened once)
        process = await trio.lowlevel.open_process(
            [sys.executable, "gateway.py", "--config", str(config), "--port", "0"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with trio.fail_after(20):
            while "WebSocket listening on" not in (text := await read(log)):
                assert process.poll() is None, text
                await trio.sleep(0.05)
        found = re.search(r"HTTP listening on (http://\S+)", text)
        assert found is not None
        yield found[1]
    finally:
        process.terminate()  # by the PID we started
        await process.wait()


async def read(path: Path) -> str:
    return await trio.Path(path).read_text()


def write_config(path: Path, fake_port: int, redis_url: str, gateways: str) -> Path:
    path.write_text(
        f'[server]\nredis_url = "{redis_url}"\nws_port = 0\ngrace_period = 1\n'
        f'[providers.openai]\nbase_url = "http://127.0.0.1:{fake_port}/v1"\n{gateways}'
    )
    return path


async def test_two_gateways_share_one_limit_exactly(
    nursery: trio.Nursery, redis_url: str, tmp_path: Path
) -> None:
    fake = FakeUpstream()
    fake_port = await nursery.start(fake.serve)
    # Windows that cannot end during the test: the count alone decides.
    gateways = (
        "[gateways.shared-sliding]\n"
        'rate_limit = { limit = 7, interval = 3600, technique = "sliding" }\n'
        "[gateways.shared-fixed]\nrate_limit = { limit = 5, interval = 1000000000 }\n"
    )
    config = write_config(tmp_path / "gateway.toml", fake_port, redis_url, gateways)
    async with (
        gateway_process(config, tmp_path / "a.log") as a,
        gateway_process(config, tmp_path / "b.log") as b,
        httpx.AsyncClient(timeout=10) as client,
    ):
        for gateway, limit in (("shared-sliding", 7), ("shared-fixed", 5)):
            statuses = []
            for i in range(limit + 3):
                base = (a, b)[i % 2]
                response = await client.post(f"{base}/v1/{ACCOUNT}/{gateway}", json=[step()])
                statuses.append(response.status_code)
            assert statuses == [200] * limit + [429] * 3, gateway
        refused = await client.post(f"{a}/v1/{ACCOUNT}/shared-sliding", json=[step()])
        assert 3590 < int(refused.headers["retry-after"]) <= 3600
    assert len(fake.requests) == 12


# --- Redis down -----------------------------------------------------------------------


@pytest.fixture
def server_settings(redis_server: RedisServer) -> dict[str, Any]:
    return {"redis_url": redis_server.url}


@pytest.fixture
def gateway_settings() -> dict[str, Any]:
    limit = {"limit": 100, "interval": 60}
    return {
        "fail-open": {"rate_limit": limit},
        "fail-closed": {"rate_limit": limit, "rate_limit_fail": "closed"},
    }


async def test_redis_down_policies(
    stack: Stack, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    open_url = f"{stack.base}/v1/{ACCOUNT}/fail-open"
    closed_url = f"{stack.base}/v1/{ACCOUNT}/fail-closed"
    for url in (open_url, closed_url):
        assert (await stack.client.post(url, json=[step()])).status_code == 200
    redis_server.stop()
    for _ in range(3):
        assert (await stack.client.post(open_url, json=[step()])).status_code == 200
        refused = await stack.client.post(closed_url, json=[step()])
        assert refused.status_code == 429
        assert refused.json()["error"][0]["code"] == 2003
        assert refused.headers["retry-after"] == "1"
    warnings = [r.getMessage() for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per request
    redis_server.start()
    assert (await stack.client.post(closed_url, json=[step()])).status_code == 200
    assert any("Redis is back" in r.getMessage() for r in caplog.records)


async def test_redis_failures_are_counted(redis_server: RedisServer) -> None:
    """What /metrics exports: checks that could not reach Redis, and refusals per gateway."""
    limited = {"rate_limit": {"limit": 1, "interval": 60}}
    config = load_config({"gateways": {"g": limited}}, is_built_in)
    gateway = config.gateway("g")
    async with open_redis(redis_server.url) as redis:
        controls = Controls.build(config, redis)
        with await controls.admit("g", gateway):
            assert controls.in_flight == {"g": 1}
        with pytest.raises(GatewayError):
            await controls.admit("g", gateway)
        redis_server.stop()
        for _ in range(2):
            with await controls.admit("g", gateway):  # rate_limit_fail = "open"
                pass
    assert (controls.redis_failures, controls.rate_limited, controls.in_flight) == (
        2,
        {"g": 1},
        {"g": 0},
    )
