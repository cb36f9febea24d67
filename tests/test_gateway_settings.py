"""Gateway settings from `[gateways.*]`: the lowest level of the hierarchy."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.conftest import ACCOUNT, Stack, gaps, step


@pytest.fixture
def gateway_settings() -> dict[str, Any]:
    return {
        "strict": {"fallback_on": "retryable_only"},
        "patient": {
            "retry_max_attempts": 3,
            "retry_delay": 250,
            "retry_backoff": "linear",
            "request_timeout": 1000,
        },
    }


async def test_retryable_only_returns_client_errors(stack: Stack) -> None:
    url = f"{stack.base}/v1/{ACCOUNT}/strict"
    bad_key = await stack.client.post(
        url, json=[step(headers={"x-fake-status": "401"}), step("anthropic")]
    )
    assert bad_key.status_code == 401  # not hidden behind the fallback
    assert bad_key.headers["cf-aig-step"] == "0"
    overloaded = await stack.client.post(
        url, json=[step(headers={"x-fake-status": "529"}), step("anthropic")]
    )
    assert overloaded.status_code == 200
    assert overloaded.headers["cf-aig-step"] == "1"


async def test_gateway_retry_and_timeout_defaults(stack: Stack, autojump_clock) -> None:
    url = f"{stack.base}/v1/{ACCOUNT}/patient"
    failing = step(headers={"x-fake-status": "500", "x-fake-key": "p"})
    await stack.client.post(url, json=[failing])
    assert gaps(stack.fake, "p") == [0.25, 0.5]

    # The gateway's first-byte timeout applies; a step's own config still wins.
    start = trio.current_time()
    slow = step(headers={"x-fake-delay-ms": "5000"}, config={"maxAttempts": 1})
    response = await stack.client.post(url, json=[slow, step("anthropic")])
    assert response.headers["cf-aig-step"] == "1"
    assert trio.current_time() - start == 1.0
    own = step(
        headers={"x-fake-delay-ms": "1500"}, config={"requestTimeout": 2000, "maxAttempts": 1}
    )
    response = await stack.client.post(url, json=[own, step("anthropic")])
    assert response.headers["cf-aig-step"] == "0"
