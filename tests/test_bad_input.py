"""Every bad input gets a clear Cloudflare envelope, and the server keeps serving."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Stack, step

MiB = 1024 * 1024


def _envelope(body: dict[str, Any], code: int) -> str:
    assert body["success"] is False
    assert body["result"] == [] and body["messages"] == []
    assert body["error"][0]["code"] == code
    assert body["internalCode"] == code
    return body["error"][0]["message"]


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        (b"{not json", 400, 2019, "valid JSON"),
        (b"[]", 400, 2019, "at least one step"),
        (b'"hello"', 400, 2019, "array of steps"),
        (b"[1]", 400, 2019, "step 0: must be an object"),
        (b'[{"endpoint": "chat/completions"}]', 400, 2019, "step 0: 'provider'"),
        (b'[{"provider": "nope", "endpoint": "x"}]', 400, 2008, "Invalid provider"),
        (
            b'[{"provider": "openai", "endpoint": "x", "headers": {"a": 1}}]',
            400,
            2019,
            "header 'a' must be a string",
        ),
        (b'[{"provider": "openai", "endpoint": "x", "headers": []}]', 400, 2019, "'headers'"),
        (
            '[{"provider": "openai", "endpoint": "x", "headers": {"名": "v"}}]'.encode(),
            400,
            2019,
            "not a valid HTTP header",
        ),
        (
            b'[{"provider": "openai", "endpoint": "x", "headers": {"a b": "v"}}]',
            400,
            2019,
            "not a valid HTTP header",
        ),
        (
            b'[{"provider": "openai", "endpoint": "x", "headers": {"a": "v\\r\\nx: y"}}]',
            400,
            2019,
            "not a valid HTTP header",
        ),
        (
            b'[{"provider": "openai", "endpoint": "x", "headers": {"a": "\\u0000"}}]',
            400,
            2019,
            "not a valid HTTP header",
        ),
        (
            b'[{"provider": "openai", "endpoint": "x", "authorization": "a\\u0000b"}]',
            400,
            2019,
            "'Authorization' is not a valid HTTP header",
        ),
        (
            b'[{"provider": "openai", "endpoint": "x", "config": {"maxAttempts": 9}}]',
            400,
            2019,
            "config.maxAttempts",
        ),
        (
            b'[{"provider": "openai", "endpoint": "x", "config": {"backoff": "random"}}]',
            400,
            2019,
            "config.backoff",
        ),
        (b'[{"provider": "openai", "endpoint": "../../admin"}]', 400, 2019, "'..'"),
        (b'[{"provider": "openai", "endpoint": "%2e%2e/admin"}]', 400, 2019, "'..'"),
        (
            b'[{"provider": "openai", "endpoint": "http://evil.example/x"}]',
            400,
            2019,
            "path below the provider",
        ),
        (
            b'[{"provider": "openai", "endpoint": "//evil.example/x"}]',
            400,
            2019,
            "path below the provider",
        ),
    ],
)
async def test_bad_universal_body(
    stack: Stack, body: bytes, status: int, code: int, needle: str
) -> None:
    response = await stack.client.post(stack.universal_url, content=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert needle in _envelope(response.json(), code)
    assert stack.fake.requests == []  # nothing reached an upstream
    assert (await stack.client.get(f"{stack.base}/healthz")).status_code == 200


async def test_too_many_steps(stack: Stack) -> None:
    response = await stack.client.post(stack.universal_url, json=[step()] * 21)
    assert response.status_code == 400
    assert "At most 20 steps" in _envelope(response.json(), 2019)
    ok = await stack.client.post(stack.universal_url, json=[step()] * 20)
    assert ok.status_code == 200


async def test_wrong_method(stack: Stack) -> None:
    response = await stack.client.get(stack.universal_url)
    assert response.status_code == 405
    assert "POST" in _envelope(response.json(), 2019)


async def test_unknown_route(stack: Stack) -> None:
    response = await stack.client.post(f"{stack.base}/nothing/here", json={})
    assert response.status_code == 404
    _envelope(response.json(), 2008)


async def test_body_over_limit(stack: Stack) -> None:
    big = b"[" + b" " * (10 * MiB) + b"]"
    response = await stack.client.post(stack.universal_url, content=big)
    assert response.status_code == 413
    assert "larger than the limit" in _envelope(response.json(), 2019)

    async def chunked():  # no Content-Length: the limit is enforced while reading
        for _ in range(11):
            yield b" " * MiB

    response = await stack.client.post(stack.universal_url, content=chunked())
    assert response.status_code == 413
    assert (await stack.client.post(stack.universal_url, json=[step()])).status_code == 200


async def test_non_string_query_is_sent_as_is(stack: Stack) -> None:
    # A string query is the raw body (e.g. a provider that takes text).
    await stack.client.post(
        stack.universal_url,
        json=[{"provider": "openai", "endpoint": "chat/completions", "query": "raw text"}],
    )
    assert stack.fake.requests[-1].body == b"raw text"
