"""Authenticated gateways over HTTP and WebSocket: 401 / 2009 without the right token."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import ACCOUNT, Stack, step
from tests.test_websocket import talk


@pytest.fixture
def gateway_settings() -> dict[str, Any]:
    return {
        "locked": {"token": "s3cret"},
        "rotating": {"tokens": ["old-token", "new-token"]},
        "rotated": {"tokens": ["new-token"]},  # the same gateway once old-token is removed
        "keyed": {
            "token": "gw-token",
            "keys": {"openai": {"default": "sk-stored"}, "anthropic": {"default": "sk-ant-stored"}},
        },
    }


async def test_token_is_required(stack: Stack) -> None:
    url = f"{stack.base}/v1/{ACCOUNT}/locked"
    for headers in (
        {},
        {"cf-aig-authorization": "Bearer wrong"},
        {"Authorization": "Bearer s3cret"},
    ):  # the provider slot does not count
        response = await stack.client.post(url, json=[step()], headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == [{"code": 2009, "message": "Unauthorized"}]
        assert "s3cret" not in response.text
    assert stack.fake.requests == []
    for token in ("Bearer s3cret", "s3cret"):  # docs examples show both forms
        response = await stack.client.post(
            url, json=[step()], headers={"cf-aig-authorization": token}
        )
        assert response.status_code == 200
    # The token may also sit in a step's headers; it never goes upstream.
    in_step = step(headers={"cf-aig-authorization": "Bearer s3cret"})
    assert (await stack.client.post(url, json=[in_step])).status_code == 200
    assert "cf-aig-authorization" not in stack.fake.requests[-1].headers
    wrong = step(headers={"cf-aig-authorization": "Bearer nope"})
    assert (await stack.client.post(url, json=[wrong])).status_code == 401
    assert (await stack.client.post(url, content=b"not json")).status_code == 401
    native = await stack.client.post(f"{url}/openai/chat/completions", json={"model": "m"})
    assert native.status_code == 401
    # Other gateways are not affected.
    assert (await stack.client.post(stack.universal_url, json=[step()])).status_code == 200


async def status(stack: Stack, gateway: str, headers: dict[str, str], surface: str) -> int:
    """The status one request gets on one surface: universal, native or websocket."""
    url = f"{stack.base}/v1/{ACCOUNT}/{gateway}"
    if surface == "universal":
        return (await stack.client.post(url, json=[step()], headers=headers)).status_code
    if surface == "native":
        native = f"{url}/openai/chat/completions"
        body = {"model": "m", "messages": []}
        sent = {"authorization": "Bearer sk-own", **headers}
        return (await stack.client.post(native, json=body, headers=sent)).status_code
    ws_url = f"ws://127.0.0.1:{stack.listening.ws_port}/v1/{ACCOUNT}/{gateway}/"
    try:
        await talk(ws_url, lambda ws: None, additional_headers=headers)
    except InvalidStatus as exc:
        return exc.response.status_code
    return 200


@pytest.mark.parametrize("surface", ["universal", "native", "websocket"])
async def test_behaviour_table(stack: Stack, surface: str) -> None:
    """Cloudflare's table: on+valid ok, on+missing 401, off+present ok, off+missing ok."""
    token = {"cf-aig-authorization": "Bearer s3cret"}
    assert await status(stack, "locked", token, surface) == 200
    assert await status(stack, "locked", {}, surface) == 401
    assert await status(stack, "locked", {"cf-aig-authorization": "Bearer s3cre"}, surface) == 401
    assert await status(stack, "open-gateway", token, surface) == 200
    assert await status(stack, "open-gateway", {}, surface) == 200
    assert all("cf-aig-authorization" not in r.headers for r in stack.fake.requests)


@pytest.mark.parametrize("surface", ["universal", "native", "websocket"])
async def test_rotation(stack: Stack, surface: str) -> None:
    for token in ("old-token", "new-token"):
        assert await status(stack, "rotating", {"cf-aig-authorization": token}, surface) == 200
    assert await status(stack, "rotated", {"cf-aig-authorization": "new-token"}, surface) == 200
    assert await status(stack, "rotated", {"cf-aig-authorization": "old-token"}, surface) == 401


async def test_token_in_the_sdks_key_slot(stack: Stack) -> None:
    """Cloudflare's SDK examples with stored keys pass the gateway token as the API key."""
    client = openai.AsyncOpenAI(
        api_key="gw-token", base_url=f"{stack.base}/v1/{ACCOUNT}/keyed/openai", max_retries=0
    )
    completion = await client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert stack.fake.requests[-1].headers["authorization"] == "Bearer sk-stored"
    claude = anthropic.AsyncAnthropic(
        api_key="gw-token", base_url=f"{stack.base}/v1/{ACCOUNT}/keyed/anthropic", max_retries=0
    )
    message = await claude.messages.create(
        model="claude-3-5-haiku-latest", max_tokens=8, messages=[]
    )
    assert message.content[0].text == "Hello from the fake upstream."
    sent = stack.fake.requests[-1].headers
    assert sent["x-api-key"] == "sk-ant-stored"
    assert "gw-token" not in str(sent)
    # A wrong value in the key slot is neither a token nor let through.
    wrong = openai.AsyncOpenAI(
        api_key="not-the-token", base_url=f"{stack.base}/v1/{ACCOUNT}/keyed/openai", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as info:
        await wrong.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert (
        info.value.body["error"][0]["code"] == 2009 if isinstance(info.value.body, dict) else True
    )
    assert len(stack.fake.requests) == 2
    # In a Universal step's key slot it works the same way.
    in_step = step(headers={"Authorization": "Bearer gw-token"})
    response = await stack.client.post(f"{stack.base}/v1/{ACCOUNT}/keyed", json=[in_step])
    assert response.status_code == 200
    assert stack.fake.requests[-1].headers["authorization"] == "Bearer sk-stored"
