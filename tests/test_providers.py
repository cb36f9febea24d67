"""Provider-native endpoints through the official SDKs, as users point them at us."""

from __future__ import annotations

import anthropic
import openai
import pytest

from server.fake_upstream import Reply
from tests.conftest import ACCOUNT, GATEWAY, Stack


def openai_client(stack: Stack, **kwargs: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-test",
        base_url=f"{stack.base}/v1/{ACCOUNT}/{GATEWAY}/openai",
        max_retries=0,
        **kwargs,
    )


async def test_openai_sdk_chat_completion(stack: Stack) -> None:
    client = openai_client(stack)
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.usage.total_tokens == 16
    assert raw.headers["cf-aig-provider"] == "openai"
    assert raw.headers["cf-aig-model"] == "gpt-4o-mini"
    assert len(raw.headers["cf-aig-log-id"]) == 36
    (sent,) = stack.fake.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"


async def test_openai_sdk_stream(stack: Stack) -> None:
    client = openai_client(stack)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(
        [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    )
    assert text == "tok0 tok1 tok2 tok3 tok4 "


async def test_openai_sdk_sees_a_cut_stream_as_an_error(stack: Stack) -> None:
    client = openai_client(stack, default_headers={"x-fake-cut-after": "2"})
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    seen = []
    with pytest.raises(openai.APIError, match="Upstream stream ended unexpectedly"):
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["tok0 ", "tok1 "]


async def test_openai_sdk_gets_provider_errors_verbatim(stack: Stack) -> None:
    client = openai_client(stack, default_headers={"x-fake-status": "429"})
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.body["message"] == "fake upstream error 429"


async def test_gateway_retries_apply_to_provider_endpoints(stack: Stack, autojump_clock) -> None:
    stack.fake.script("/chat/completions", Reply(status=503), Reply(status=503))
    client = openai_client(
        stack, default_headers={"cf-aig-max-attempts": "3", "cf-aig-retry-delay": "500"}
    )
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert len(stack.fake.requests) == 3
    assert not [h for h in stack.fake.requests[0].headers if h.startswith("cf-aig")]


async def test_anthropic_sdk_messages_and_stream(stack: Stack) -> None:
    client = anthropic.AsyncAnthropic(
        api_key="sk-ant-test",
        base_url=f"{stack.base}/v1/{ACCOUNT}/{GATEWAY}/anthropic",
        max_retries=0,
    )
    message = await client.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.content[0].text == "Hello from the fake upstream."
    async with client.messages.stream(
        model="claude-3-5-haiku-latest",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    sent = stack.fake.requests[0].headers
    # The SDK's own credential header goes upstream untouched (newer SDKs send a bearer).
    assert "sk-ant-test" in (sent.get("x-api-key"), sent.get("authorization", "")[7:])
    assert "anthropic-version" in sent
    assert stack.fake.requests[0].path == "/v1/messages"


async def test_workers_ai_model_path_and_query_string(stack: Stack) -> None:
    url = f"{stack.base}/v1/{ACCOUNT}/{GATEWAY}/workers-ai/@cf/meta/llama-3.1-8b-instruct"
    response = await stack.client.post(
        url + "?trace=1", json={"prompt": "hi"}, headers={"Authorization": "Bearer cf"}
    )
    assert response.json()["success"] is True
    assert response.headers["cf-aig-model"] == "@cf/meta/llama-3.1-8b-instruct"
    assert stack.fake.requests[0].path == (
        f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct?trace=1"
    )


async def test_provider_endpoint_errors(stack: Stack) -> None:
    base = f"{stack.base}/v1/{ACCOUNT}/{GATEWAY}"
    unknown = await stack.client.post(f"{base}/nope/chat/completions", json={})
    assert unknown.status_code == 400
    assert unknown.json()["error"][0]["code"] == 2008
    escape = await stack.client.post(f"{base}/openai/%2e%2e/%2e%2e/admin", json={})
    assert escape.status_code == 400
    compat = await stack.client.post(f"{base}/compat/chat/completions", json={})
    assert compat.status_code == 404
    assert stack.fake.requests == []


async def test_header_bytes_pass_through_unchanged(stack: Stack) -> None:
    url = f"{stack.base}/v1/{ACCOUNT}/{GATEWAY}/openai/chat/completions"
    await stack.client.post(
        url, json={"model": "m"}, headers={"x-note": "caf\xe9".encode("latin-1")}
    )
    assert stack.fake.requests[0].headers["x-note"] == "caf\xe9"
