"""Stored provider keys (BYOK) as clients meet them: every surface, aliases, precedence."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from tests.conftest import ACCOUNT, Stack, step
from tests.test_websocket import seed_create, talk, until_done

AUTH = {"cf-aig-authorization": "Bearer gw-token"}
KEYS = {
    "openai": {"default": "sk-openai-default", "prod": "sk-openai-prod"},
    "anthropic": {"default": "sk-ant-default"},
    "workers-ai": {"default": "cf-workers-default"},
    "groq": {"default": "gsk-default"},
    "mistral": {"default": "mistral-default"},
}


@pytest.fixture
def gateway_settings() -> dict[str, Any]:
    return {
        "keyed": {"token": "gw-token", "keys": KEYS},
        "strict": {"token": "gw-token", "byok_only": True},
    }


def without_key(provider: str, **fields: Any) -> dict[str, Any]:
    """A Universal step that brings no provider key of its own."""
    built = step(provider, **fields)
    built["headers"].pop("Authorization")
    return built


@pytest.mark.parametrize(
    ("provider", "path", "header", "value"),
    [
        ("openai", "chat/completions", "authorization", "Bearer sk-openai-default"),
        ("groq", "chat/completions", "authorization", "Bearer gsk-default"),
        ("mistral", "v1/chat/completions", "authorization", "Bearer mistral-default"),
        ("anthropic", "v1/messages", "x-api-key", "sk-ant-default"),
        (
            "workers-ai",
            "@cf/meta/llama-3.1-8b-instruct",
            "authorization",
            "Bearer cf-workers-default",
        ),
    ],
)
async def test_injected_in_each_providers_header(
    stack: Stack, provider: str, path: str, header: str, value: str
) -> None:
    url = f"{stack.base}/v1/{ACCOUNT}/keyed/{provider}/{path}"
    response = await stack.client.post(url, json={"model": "m", "messages": []}, headers=AUTH)
    assert response.status_code == 200
    (sent,) = stack.fake.requests
    assert sent.headers[header] == value
    assert value.split()[-1] not in response.text + str(response.headers)


async def test_alias_selection_and_precedence(stack: Stack) -> None:
    url = f"{stack.base}/v1/{ACCOUNT}/keyed"
    await stack.client.post(url, json=[without_key("openai")], headers=AUTH)
    await stack.client.post(
        url, json=[without_key("openai")], headers={**AUTH, "cf-aig-byok-alias": "prod"}
    )
    # A step's own alias header wins over the request's.
    in_step = without_key("openai", headers={"cf-aig-byok-alias": "default"})
    await stack.client.post(url, json=[in_step], headers={**AUTH, "cf-aig-byok-alias": "prod"})
    # The request's own key wins over any stored one, alias or not.
    await stack.client.post(url, json=[step()], headers={**AUTH, "cf-aig-byok-alias": "prod"})
    sent = [r.headers["authorization"] for r in stack.fake.requests]
    assert sent == [
        "Bearer sk-openai-default",
        "Bearer sk-openai-prod",
        "Bearer sk-openai-default",
        "Bearer test-key",
    ]
    assert all("cf-aig-byok-alias" not in r.headers for r in stack.fake.requests)


async def test_unknown_alias_is_2040(stack: Stack) -> None:
    url = f"{stack.base}/v1/{ACCOUNT}/keyed"
    headers = {**AUTH, "cf-aig-byok-alias": "staging"}
    response = await stack.client.post(url, json=[without_key("openai")], headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == [
        {
            "code": 2040,
            "message": "Provider 'openai' has no BYOK credential named 'staging'. "
            "Configured aliases: 'default', 'prod'",
        }
    ]
    native = await stack.client.post(
        f"{url}/anthropic/v1/messages", json={"model": "m"}, headers=headers
    )
    assert native.json()["error"][0]["message"].endswith("Configured aliases: 'default'")
    assert stack.fake.requests == []


async def test_byok_only_requires_credentials(stack: Stack) -> None:
    url = f"{stack.base}/v1/{ACCOUNT}/strict"
    response = await stack.client.post(url, json=[without_key("openai")], headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"] == [{"code": 2042, "message": "Provider credentials required"}]
    assert stack.fake.requests == []
    assert (await stack.client.post(url, json=[step()], headers=AUTH)).status_code == 200


async def test_websocket_events_get_stored_keys(stack: Stack) -> None:
    frame = seed_create("keyed")
    del frame["request"]["headers"]["Authorization"]

    def client(ws: ClientConnection) -> list[dict[str, Any]]:
        ws.send(json.dumps(frame))
        return until_done(ws, "keyed")

    url = f"ws://127.0.0.1:{stack.listening.ws_port}/v1/{ACCOUNT}/keyed/"
    (created,) = await talk(url, client, additional_headers=AUTH)
    assert created["type"] == "universal.created"
    assert stack.fake.requests[0].headers["authorization"] == "Bearer cf-workers-default"
    assert "cf-workers-default" not in json.dumps(created)
