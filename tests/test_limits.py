"""Request limits: header count and size, steps, requests in flight, per-address caps.

Each limit answers with the Cloudflare envelope and names its setting. Requests
are kept in flight with held streams (`x-fake-hold`), never with sleeps.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from trio_websocket import ConnectionRejected, open_websocket_url
from websockets.sync.client import ClientConnection

from tests.conftest import ACCOUNT, Stack, step
from tests.test_websocket import seed_create, talk, until_done

DONE = b"data: [DONE]\n\n"


@pytest.fixture
def server_settings() -> dict[str, Any]:
    return {"max_steps": 3, "max_connections_per_ip": 3}


@pytest.fixture
def gateway_settings() -> dict[str, Any]:
    return {"narrow": {"max_concurrent": 2}}


def assert_envelope(response: httpx.Response, status: int, code: int, text: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert body["success"] is False and body["error"][0]["code"] == code
    assert text in body["error"][0]["message"]


async def test_header_count_and_size(stack: Stack) -> None:
    many = {f"x-h{i}": "v" for i in range(101)}
    response = await stack.client.post(stack.universal_url, json=[step()], headers=many)
    assert_envelope(response, 431, 2019, "server.max_header_count 100")
    big = {"x-big": "v" * 33 * 1024}
    response = await stack.client.post(stack.universal_url, json=[step()], headers=big)
    assert_envelope(response, 431, 2019, "server.max_header_bytes 32768")
    assert stack.fake.requests == []
    fine = {f"x-h{i}": "v" * 100 for i in range(80)}
    assert (await stack.client.post(stack.universal_url, json=[step()], headers=fine)).is_success


async def test_steps_per_request(stack: Stack) -> None:
    response = await stack.client.post(stack.universal_url, json=[step()] * 4)
    assert_envelope(response, 400, 2019, "At most 3 steps are allowed, got 4")

    def client(ws: ClientConnection) -> list[dict[str, Any]]:
        frame = seed_create("four")
        frame["request"] = [frame["request"]] * 4
        ws.send(json.dumps(frame))
        return until_done(ws, "four")

    (error,) = await talk(stack.ws_url, client)
    assert error["type"] == "universal.error"
    assert error["error"]["error"][0]["message"] == "At most 3 steps are allowed, got 4"
    assert stack.fake.requests == []


async def hold(stack: Stack, exits: AsyncExitStack, url: str, gate: str) -> AsyncIterator[bytes]:
    """Start a streamed request and keep it in flight until the gate opens.

    The caller keeps the returned iterator: dropping it would close the stream.
    """
    body = [step(stream=True, headers={"x-fake-hold": gate})]
    response = await exits.enter_async_context(stack.client.stream("POST", url, json=body))
    assert response.status_code == 200
    chunks = response.aiter_bytes()
    await chunks.__anext__()  # the first chunk: the rest waits on the gate
    return chunks


async def test_max_concurrent_per_gateway(stack: Stack) -> None:
    url = f"{stack.base}/v1/{ACCOUNT}/narrow"
    async with AsyncExitStack() as exits:
        held = [await hold(stack, exits, url, "narrow") for _ in range(2)]
        refused = await stack.client.post(url, json=[step()])
        assert_envelope(refused, 429, 2003, "Too many concurrent requests (max_concurrent 2)")
        assert refused.headers["retry-after"] == "1"
        # Other gateways are not affected.
        assert (await stack.client.post(stack.universal_url, json=[step()])).is_success
        stack.fake.gate("narrow").set()
        assert [b"".join([c async for c in chunks])[-14:] for chunks in held] == [DONE] * 2
    assert (await stack.client.post(url, json=[step()])).is_success  # slots freed


async def test_requests_in_flight_per_address(stack: Stack) -> None:
    async with AsyncExitStack() as exits:
        held = [await hold(stack, exits, stack.universal_url, "per-ip") for _ in range(3)]
        refused = await stack.client.post(stack.universal_url, json=[step()])
        assert_envelope(refused, 429, 2003, "Too many requests in flight from this address")
        assert (await stack.client.get(f"{stack.base}/healthz")).is_success
        stack.fake.gate("per-ip").set()
        assert [b"".join([c async for c in chunks])[-14:] for chunks in held] == [DONE] * 3
    assert (await stack.client.post(stack.universal_url, json=[step()])).is_success


async def test_websockets_per_address(stack: Stack) -> None:
    async with AsyncExitStack() as exits:
        for _ in range(3):
            await exits.enter_async_context(open_websocket_url(stack.ws_url))
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(stack.ws_url):
                pass
        assert info.value.status_code == 429
        assert json.loads(info.value.body)["error"][0]["code"] == 2003
    async with open_websocket_url(stack.ws_url) as ws:  # the slots were given back
        await ws.send_message(json.dumps(seed_create("ok")))
        assert json.loads(await ws.get_message())["type"] == "universal.created"
