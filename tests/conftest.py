"""Shared fixtures: a fake upstream and the gateway, both real servers on 127.0.0.1.

Rules for the suite:
- Loopback only; every server listens on a port the OS picks (port 0).
- Anything about time runs under `autojump_clock`, so timeouts and backoff
  delays are exact and instant.
- The gateway runs in-process, in the test's own trio run, so the mock clock
  drives its timeouts as well as the fake upstream's delays.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from engine.config import Config, load_config
from gateway import Listening, serve
from providers import is_built_in
from server.fake_upstream import FakeUpstream

ACCOUNT = "acct123"
GATEWAY = "my-gateway"


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    """Like pytest-trio's fixture, but jumps only after 20 ms of real idleness.

    With a threshold of 0 the clock would jump while loopback bytes are still
    in flight between the test, the gateway and the fake upstream, firing
    timeouts that real time would never reach.
    """
    return trio.testing.MockClock(autojump_threshold=0.02)


@dataclass
class Stack:
    fake: FakeUpstream
    listening: Listening
    client: httpx.AsyncClient

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.listening.http_port}"

    @property
    def universal_url(self) -> str:
        return f"{self.base}/v1/{ACCOUNT}/{GATEWAY}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.listening.ws_port}/v1/{ACCOUNT}/{GATEWAY}/"


def make_config(fake_port: int, **extra: Any) -> Config:
    up = f"http://127.0.0.1:{fake_port}"
    data: dict[str, Any] = {
        "server": {"http_port": 0, "ws_port": 0, "access_log": False, "grace_period": 2},
        "providers": {
            "openai": {"base_url": f"{up}/v1"},
            "workers-ai": {"base_url": f"{up}/client/v4/accounts/{{account_id}}/ai"},
            "anthropic": {"base_url": up},
            "groq": {"base_url": f"{up}/openai/v1"},
            "mistral": {"base_url": up},
            # Nothing listens on port 9 of loopback: connection refused.
            "custom-dead": {"base_url": "http://127.0.0.1:9/v1"},
        },
    }
    for key, value in extra.items():
        data.setdefault(key, {}).update(value)
    return load_config(data, is_built_in)


@pytest.fixture
def gateway_settings() -> dict[str, Any]:
    """Override in a test module to configure `[gateways.*]`."""
    return {}


@pytest.fixture
def provider_settings() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change `[providers.*]` entries."""
    return {}


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """Override in a test module to change `[server]` entries (e.g. `redis_url`)."""
    return {}


@pytest.fixture
async def stack(
    nursery: trio.Nursery,
    gateway_settings: dict[str, Any],
    provider_settings: dict[str, Any],
    server_settings: dict[str, Any],
) -> AsyncIterator[Stack]:
    fake = FakeUpstream()
    fake_port = await nursery.start(fake.serve)
    up = f"http://127.0.0.1:{fake_port}"
    extra = {
        "server": server_settings,
        "gateways": gateway_settings,
        "providers": {
            slug: {
                k: v.replace("{upstream}", up) if isinstance(v, str) else v
                for k, v in table.items()
            }
            for slug, table in provider_settings.items()
        },
    }
    config = make_config(fake_port, **extra)
    shutdown = trio.Event()
    listening = await nursery.start(
        lambda task_status: serve(config, shutdown=shutdown, task_status=task_status)
    )
    async with httpx.AsyncClient(timeout=30) as client:
        yield Stack(fake, listening, client)
    shutdown.set()


def step(
    provider: str = "openai",
    endpoint: str = "chat/completions",
    *,
    stream: bool = False,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A Universal step as a client would write it."""
    query: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "What is Cloudflare?"}],
    }
    if provider == "workers-ai":
        endpoint = "@cf/meta/llama-3.1-8b-instruct"
        query = {"messages": query["messages"]}
    elif provider == "anthropic":
        endpoint = "v1/messages"
        query = {
            "model": "claude-3-5-haiku-latest",
            "max_tokens": 64,
            "messages": query["messages"],
        }
    if stream:
        query["stream"] = True
    return {
        "provider": provider,
        "endpoint": endpoint,
        "headers": {
            "Authorization": "Bearer test-key",
            "Content-Type": "application/json",
            **(headers or {}),
        },
        "query": query,
        **fields,
    }


def arrivals(fake: FakeUpstream, key: str) -> list[float]:
    """When each request tagged `x-fake-key: key` reached the fake upstream."""
    return [r.time for r in fake.requests if r.headers.get("x-fake-key") == key]


def gaps(fake: FakeUpstream, key: str) -> list[float]:
    """Seconds between consecutive arrivals of `key`: retry delays as the upstream saw them."""
    return [round(b - a, 6) for a, b in itertools.pairwise(arrivals(fake, key))]


def sse_data(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


Checker = Callable[[httpx.Response], None]


# --- Redis ---------------------------------------------------------------------------


class RedisServer:
    """A private `redis-server` on a free loopback port, which a test may stop and restart."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed (apt install redis-server; .ci/run does this)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.binary = binary
        self.workdir = workdir
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None
        self.extra: list[str] = []  # more redis-server arguments, e.g. --requirepass

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()  # by the PID we started, nothing else
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty Redis for one test (which may kill it to test an outage)."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """An empty Redis: the one .ci/run started (REDIS_URL), flushed, or a private one."""
    shared = os.environ.get("REDIS_URL")
    if shared is None:
        server = RedisServer(tmp_path)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()
        return
    host, _, port = shared.removeprefix("redis://").partition("/")[0].partition(":")
    with socket.create_connection((host, int(port or 6379)), timeout=5) as conn:
        conn.sendall(b"FLUSHALL\r\n")
        assert conn.recv(64).startswith(b"+OK")
    yield shared
