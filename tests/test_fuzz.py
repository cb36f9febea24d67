"""Property-based fuzzing: random JSON through every surface that parses it.

Whatever a client sends, the gateway answers with an upstream response or a
4xx/5xx Cloudflare envelope of its own, never a 500 "Internal gateway error",
never a traceback in its log, and it keeps serving. The gateway runs as a user
starts it (`gateway.py --demo` in a subprocess, with the built-in fake
upstream), so its real stderr is what gets checked.

Examples are bounded in number and in the delays they can ask for, so the
module stays fast.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from engine.config import DEFAULT_GATEWAY
from engine.errors import GatewayError
from engine.plan import Context, plan_step
from engine.steps import parse_body
from providers import Registry
from tests.conftest import ACCOUNT
from tests.test_hardening import nested

ROOT = Path(__file__).resolve().parent.parent
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- strategies ---------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "\x00", "\ufeff", "名前", "😀", "a\u0301", "\u202e", "%2e%2e"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
deep = st.integers(min_value=100, max_value=800).map(nested)
# Header names a client might send; never the fake upstream's own x-fake-* controls.
header_names = st.sampled_from(
    [
        "Authorization",
        "Content-Type",
        "x-api-key",
        "cf-aig-request-timeout",
        "cf-aig-max-attempts",
        "cf-aig-backoff",
        "cf-aig-event-id",
        "cf-aig-authorization",
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "a b",
        "名",
        "",
    ]
) | st.text(max_size=10).filter(lambda name: not name.lower().startswith("x-fake"))
# Small delays only: a step may legitimately ask to wait, and the fuzz must stay fast.
small_ints = st.integers(min_value=-5, max_value=20)
configs = st.fixed_dictionaries(
    {},
    optional={
        "requestTimeout": small_ints | json_values,
        "maxAttempts": small_ints | json_values,
        "retryDelay": small_ints | json_values,
        "backoff": st.sampled_from(["constant", "linear", "exponential"]) | json_values,
    },
)
providers = st.sampled_from(
    ["openai", "workers-ai", "anthropic", "custom-dead", "nope", "compat", "OPENAI", ""]
)
endpoints = st.sampled_from(
    [
        "chat/completions",
        "v1/chat/completions",
        "@cf/meta/llama-3.1-8b-instruct",
        "v1/messages",
        "../admin",
        "//evil.example/x",
        "http://evil.example/",
        "%2e%2e/x",
        "a?b=c&d",
        "chat/completions#frag",
    ]
) | st.text(max_size=20)
optional_fields = {
    "headers": st.dictionaries(header_names, st.text(max_size=12) | small_ints, max_size=4)
    | json_values,
    "query": json_values | deep,
    "config": configs | json_values,
    "authorization": st.text(max_size=12) | json_values,
    "eventId": st.text(max_size=12) | json_values,
}
# Mostly steps a provider would accept, with junk in some fields; some with junk everywhere.
steps = (
    st.fixed_dictionaries(
        {"provider": providers, "endpoint": endpoints, "query": json_values | deep},
        optional={k: v for k, v in optional_fields.items() if k != "query"},
    )
    | st.fixed_dictionaries(
        {"provider": providers, "endpoint": endpoints}, optional=optional_fields
    )
    | st.fixed_dictionaries(
        {},
        optional={"provider": providers | json_values, "endpoint": endpoints | json_values}
        | optional_fields,
    )
)
universal_bodies = steps | st.lists(steps, min_size=0, max_size=3) | json_values | deep


def encode(value: Any) -> bytes:
    """JSON bytes of a generated value (the stdlib writes what orjson would refuse to)."""
    return json.dumps(value, ensure_ascii=False).encode()


# Bodies as bytes: mostly steps, then any value, nesting beyond any parser's limit, junk.
raw_bodies = (
    st.lists(steps, min_size=1, max_size=3).map(encode)
    | steps.map(encode)
    | universal_bodies.map(encode)
    | st.integers(min_value=1000, max_value=5000).map(lambda n: b"[" * n + b"]" * n)
    | st.binary(max_size=64)
)


# --- the engine alone: thousands of bodies, no sockets -----------------------------


@settings(max_examples=600, deadline=None)
@given(body=raw_bodies)
def test_engine_parses_or_refuses_any_body(body: bytes) -> None:
    registry = Registry()
    ctx = Context(registry.resolve, ACCOUNT, {}, DEFAULT_GATEWAY)
    try:
        parsed = parse_body(body)
        for index, item in enumerate(parsed):
            plan = plan_step(item, index, ctx)
            assert plan.target.startswith(b"/")
    except GatewayError as exc:
        assert 400 <= exc.status < 500
        assert exc.envelope()["error"][0]["message"]


# --- the gateway as a user runs it ----------------------------------------------------


class Running:
    def __init__(self, process: subprocess.Popen[bytes], log: IO[bytes], http: int, ws: int):
        self.process, self.log, self.http_port, self.ws_port = process, log, http, ws
        self.client = httpx.Client(timeout=30)

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("fuzz")
    config = folder / "gateway.toml"
    config.write_text(
        '[server]\naccess_log = false\n\n[providers.custom-dead]\nbase_url = "http://127.0.0.1:9"\n'
    )
    log = (folder / "stderr.log").open("w+b")
    process = subprocess.Popen(
        [
            *(sys.executable, str(ROOT / "gateway.py"), "--demo", "--config", str(config)),
            *("--port", "0", "--ws-port", "0"),
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        text = ""
        for _ in range(400):
            text = Path(log.name).read_text(errors="replace")
            if "WebSocket listening" in text or process.poll() is not None:
                break
            time.sleep(0.05)
        http = re.search(r"HTTP listening on http://[^:]+:(\d+)", text)
        ws = re.search(r"WebSocket listening on ws://[^:]+:(\d+)", text)
        assert http and ws, text
        running = Running(process, log, int(http[1]), int(ws[1]))
        yield running
        running.client.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def _check_log(running: Running) -> None:
    text = running.log_text()
    assert "Traceback" not in text, text[-3000:]
    assert " ERROR " not in text, text[-3000:]


def _check_gateway_error(envelope: Any) -> None:
    """A gateway-made error is the whole envelope, and never an internal one."""
    assert set(envelope) >= {"success", "result", "messages", "error", "internalCode"}
    assert envelope["success"] is False and envelope["result"] == []
    assert envelope["httpCode"] != 500, envelope
    assert envelope["message"] != "Internal gateway error"


@FUZZ
@given(body=raw_bodies)
def test_universal_over_http_never_fails_inside(running: Running, body: bytes) -> None:
    url = f"http://127.0.0.1:{running.http_port}/v1/{ACCOUNT}/fuzz"
    response = running.client.post(url, content=body)
    assert response.status_code != 500
    if response.headers.get("content-type") == "application/json":
        payload = response.json()
        if isinstance(payload, dict) and payload.get("name") == "AiGatewayError":
            _check_gateway_error(payload)
            assert response.status_code == payload["httpCode"]
    _check_log(running)


@FUZZ
@given(body=raw_bodies)
def test_provider_native_bodies_never_fail_inside(running: Running, body: bytes) -> None:
    url = f"http://127.0.0.1:{running.http_port}/v1/{ACCOUNT}/fuzz/openai/chat/completions"
    response = running.client.post(url, content=body)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        _check_gateway_error(response.json())
    _check_log(running)


@pytest.fixture(scope="module")
def socket(running: Running) -> Iterator[ClientConnection]:
    with connect(f"ws://127.0.0.1:{running.ws_port}/v1/{ACCOUNT}/fuzz/", open_timeout=10) as ws:
        yield ws


@FUZZ
@given(
    frame=st.fixed_dictionaries({"type": st.just("universal.create"), "request": universal_bodies})
    | json_values
)
def test_websocket_frames_never_fail_inside(
    socket: ClientConnection, running: Running, frame: Any
) -> None:
    socket.send(encode(frame).decode())
    # A well-formed event behind it: when its answer comes, the frame above has been handled.
    marker = {
        "type": "universal.create",
        "request": {
            "eventId": "marker",
            "provider": "openai",
            "endpoint": "chat/completions",
            "query": {"model": "m"},
        },
    }
    socket.send(json.dumps(marker))
    while True:
        message = json.loads(socket.recv(timeout=30))
        assert message["type"] in (
            "universal.created",
            "universal.stream",
            "universal.done",
            "universal.error",
        )
        if message["type"] == "universal.error":
            _check_gateway_error(message["error"])
        if (
            message["metadata"].get("eventId") == "marker"
            and message["type"] == "universal.created"
        ):
            assert message["response"]["object"] == "chat.completion"
            break
    _check_log(running)
