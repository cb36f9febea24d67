"""Defects found by probing the gateway from outside, and the classes of input behind them.

- every required field and type of a Universal step, table-driven;
- JSON nested deeper than the gateway will write back, on every surface that parses it;
- both documented spellings of the Workers AI base URL with every endpoint form;
- the listen backlog, and a burst of new connections all answered.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import orjson
import pytest
import trio
from websockets.sync.client import ClientConnection

from engine import jsondoc
from engine.errors import GatewayError
from engine.steps import parse_steps
from tests.conftest import ACCOUNT, GATEWAY, Stack, step
from tests.test_websocket import seed_create, talk, until_done

# --- step fields ------------------------------------------------------------------

GOOD = {"provider": "openai", "endpoint": "chat/completions", "query": {"model": "m"}}
MISSING = "<missing>"
WRONG_TYPES: list[Any] = [None, 0, 1.5, True, [], {}, ["x"], {"a": "b"}]


def _field_cases() -> list[tuple[str, Any, str | None]]:
    """(field, value, expected message fragment, or None when the step is valid)."""
    cases: list[tuple[str, Any, str | None]] = []
    for name in ("provider", "endpoint"):
        cases.append((name, MISSING, f"step 0: '{name}' is required"))
        cases.append((name, "", f"step 0: '{name}' must be a non-empty string"))
        cases += [(name, v, f"step 0: '{name}' must be a non-empty string") for v in WRONG_TYPES]
    for value in (0, True, [], "x", ["a"]):
        cases.append(("headers", value, "step 0: 'headers' must be an object of strings"))
    for value in (0, True, [], {}, None):
        cases.append(("headers", {"x-a": value}, "step 0: header 'x-a' must be a string"))
    for value in (0, True, [], "x"):
        cases.append(("config", value, "step 0: 'config' must be an object"))
    for value in (0, True, [], {}):
        cases.append(("authorization", value, "step 0: 'authorization' must be a string"))
        cases.append(("eventId", value, "step 0: 'eventId' must be a string"))
    for key in ("requestTimeout", "maxAttempts", "retryDelay"):
        for value in ("10", True, [], {}, 1.5):
            cases.append(("config", {key: value}, f"step 0: config.{key} must be an integer"))
        cases.append(("config", {key: -1}, f"step 0: config.{key} must be"))
    cases.append(("config", {"backoff": 3}, "step 0: config.backoff must be one of"))
    # Valid values of the optional fields.
    cases += [
        ("headers", None, None),
        ("query", "raw text", None),
        ("query", [1, 2], None),
        ("query", None, None),
        ("query", MISSING, None),
        ("config", {"requestTimeout": 1000.0, "maxAttempts": 5, "backoff": "linear"}, None),
        ("eventId", "e-1", None),
        ("authorization", "Bearer k", None),
    ]
    return cases


@pytest.mark.parametrize(("field", "value", "message"), _field_cases())
def test_every_step_field_is_checked(field: str, value: Any, message: str | None) -> None:
    item = dict(GOOD)
    if value == MISSING:
        del item[field]
    else:
        item[field] = value
    # The same step second in a chain: the message names step 1.
    if message is None:
        parse_steps([GOOD, item])
        return
    with pytest.raises(GatewayError) as caught:
        parse_steps([GOOD, item])
    assert caught.value.status == 400 and caught.value.code == 2019
    assert message.replace("step 0", "step 1") in caught.value.message


async def test_step_without_endpoint_never_goes_upstream(stack: Stack) -> None:
    body = [step(), {"provider": "openai", "headers": {}, "query": {"model": "m"}}]
    response = await stack.client.post(stack.universal_url, json=body)
    assert response.status_code == 400
    envelope = response.json()
    assert envelope["error"] == [{"code": 2019, "message": "step 1: 'endpoint' is required"}]
    assert stack.fake.requests == []


# --- nesting depth ----------------------------------------------------------------


def nested(depth: int) -> Any:
    """A value with `depth` levels of arrays and objects."""
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_depth_rule_counts_levels_exactly() -> None:
    at_limit = nested(jsondoc.MAX_DEPTH)
    assert jsondoc.fits(at_limit) and jsondoc.fits(at_limit, orjson.dumps(at_limit))
    over = nested(jsondoc.MAX_DEPTH + 1)
    assert not jsondoc.fits(over) and not jsondoc.fits(over, orjson.dumps(over))
    # Brackets inside strings only make the cheap bound give way to the real walk.
    assert jsondoc.fits({"a": "[" * 500}, orjson.dumps({"a": "[" * 500}))
    assert jsondoc.loads(orjson.dumps(at_limit)) == at_limit


@pytest.mark.parametrize("depth", [300, 2000])
async def test_deep_universal_query_is_a_400(stack: Stack, depth: int) -> None:
    # 300 parses but cannot be written back; 2000 is beyond what the parser takes.
    body = b'[{"provider":"openai","endpoint":"chat/completions","query":'
    body += b'{"a":' * depth + b"1" + b"}" * depth + b"}]"
    response = await stack.client.post(stack.universal_url, content=body)
    assert response.status_code == 400
    assert "nests deeper than 128 levels" in response.json()["error"][0]["message"]
    assert stack.fake.requests == []


async def test_query_just_under_the_limit_goes_upstream(stack: Stack) -> None:
    query = {"model": "gpt-4o-mini", "deep": nested(jsondoc.MAX_DEPTH - 3)}
    response = await stack.client.post(
        stack.universal_url,
        json=[{"provider": "openai", "endpoint": "chat/completions", "query": query}],
    )
    assert response.status_code == 200
    assert orjson.loads(stack.fake.requests[0].body) == query


async def test_deep_native_body_is_a_400(stack: Stack) -> None:
    url = f"{stack.base}/v1/{ACCOUNT}/{GATEWAY}/openai/chat/completions"
    body = b'{"model":"m","x":' + b"[" * 300 + b"]" * 300 + b"}"
    response = await stack.client.post(url, content=body)
    assert response.status_code == 400
    assert "nests deeper" in response.json()["error"][0]["message"]
    # A body that is not JSON at all is the provider's to judge.
    response = await stack.client.post(url, content=b"{not json")
    assert response.status_code == 200
    assert stack.fake.requests[-1].body == b"{not json"


async def test_deep_websocket_frame_is_an_error_event(stack: Stack) -> None:
    frame = seed_create("deep")
    frame["request"]["query"] = nested(300)

    def client(ws: ClientConnection) -> list[dict[str, Any]]:
        ws.send(json.dumps(frame))
        error = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps(seed_create("after")))  # the socket still serves
        return [error, *until_done(ws, "after")]

    error, created = await talk(stack.ws_url, client)
    assert error["type"] == "universal.error"
    assert error["error"]["internalCode"] == 2019
    assert "nests deeper" in error["error"]["message"]
    assert created["type"] == "universal.created"


# --- Workers AI base URL forms ----------------------------------------------------

WORKERS_BASES = {
    "ai": "{upstream}/client/v4/accounts/{account_id}/ai",
    "ai/run": "{upstream}/client/v4/accounts/{account_id}/ai/run",
    "ai/run/": "{upstream}/client/v4/accounts/{account_id}/ai/run/",
}
WORKERS_ENDPOINTS = {
    "@cf/meta/llama-3.1-8b-instruct": "/ai/run/@cf/meta/llama-3.1-8b-instruct",
    "run/@cf/meta/llama-3.1-8b-instruct": "/ai/run/@cf/meta/llama-3.1-8b-instruct",
    "v1/chat/completions": "/ai/v1/chat/completions",
}


@pytest.mark.parametrize(
    "provider_settings",
    [{"workers-ai": {"base_url": base}} for base in WORKERS_BASES.values()],
    ids=list(WORKERS_BASES),
)
@pytest.mark.parametrize("endpoint", list(WORKERS_ENDPOINTS))
async def test_workers_ai_base_url_forms(stack: Stack, endpoint: str) -> None:
    expected = f"/client/v4/accounts/{ACCOUNT}{WORKERS_ENDPOINTS[endpoint]}"
    query = {"messages": [{"role": "user", "content": "hi"}]}
    universal = await stack.client.post(
        stack.universal_url,
        json=[{"provider": "workers-ai", "endpoint": endpoint, "query": query}],
    )
    native = await stack.client.post(
        f"{stack.base}/v1/{ACCOUNT}/{GATEWAY}/workers-ai/{endpoint}", json=query
    )
    assert universal.status_code == native.status_code == 200
    assert [r.path for r in stack.fake.requests] == [expected, expected]


@pytest.mark.parametrize(
    "provider_settings", [{"workers-ai": {"base_url": WORKERS_BASES["ai/run"]}}]
)
async def test_seed_examples_with_the_run_base(stack: Stack) -> None:
    """The seed's cURL and WebSocket examples against a base ending in /ai/run."""
    seed_curl = [
        {
            "provider": "workers-ai",
            "endpoint": "@cf/meta/llama-3.1-8b-instruct",
            "headers": {"Authorization": "Bearer token", "Content-Type": "application/json"},
            "query": {"messages": [{"role": "user", "content": "What is Cloudflare?"}]},
        }
    ]
    response = await stack.client.post(stack.universal_url, json=seed_curl)
    assert response.status_code == 200 and response.json()["success"] is True

    def client(ws: ClientConnection) -> list[dict[str, Any]]:
        ws.send(json.dumps(seed_create()))
        return until_done(ws, "my-request")

    (created,) = await talk(stack.ws_url, client)
    assert created["response"]["success"] is True
    expected = f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"
    assert [r.path for r in stack.fake.requests] == [expected, expected]


# --- connection bursts ------------------------------------------------------------


def _listen_backlogs(port: int) -> list[int]:
    """Send-Q of the listening sockets on `port`: the backlog the kernel granted."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return [int(line.split()[2]) for line in out.splitlines() if line.strip()]


def _somaxconn() -> int:
    with open("/proc/sys/net/core/somaxconn") as f:
        return int(f.read())


async def test_listeners_get_the_configured_backlog(stack: Stack) -> None:
    expected = min(4096, _somaxconn())
    assert _listen_backlogs(stack.listening.http_port) == [expected]
    assert _listen_backlogs(stack.listening.ws_port) == [expected]


BURST = 400


async def test_burst_of_new_connections_all_answered(stack: Stack) -> None:
    """Hundreds of clients connecting at once, each sending a Universal request."""
    body = orjson.dumps([step()])
    request = (
        b"POST /v1/%s/%s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % (ACCOUNT.encode(), GATEWAY.encode(), len(body))
    ) + body
    statuses: list[bytes] = []
    ready = trio.Event()

    async def client() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", stack.listening.http_port)
        async with stream:
            await ready.wait()  # every socket is connected before any request is sent
            await stream.send_all(request)
            head = b""
            while b"\r\n" not in head:
                chunk = await stream.receive_some(65536)
                assert chunk, "connection closed without a response"
                head += chunk
            statuses.append(head.split(b" ", 2)[1])

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(BURST):
                nursery.start_soon(client)
            await trio.sleep(0.5)
            ready.set()
    assert statuses == [b"200"] * BURST
