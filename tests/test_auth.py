"""Authenticated gateways over HTTP: 401 / 2009 without the right token."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ACCOUNT, Stack, step


@pytest.fixture
def gateway_settings() -> dict[str, Any]:
    return {"locked": {"token": "s3cret"}}


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
