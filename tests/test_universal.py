"""The Universal Endpoint over HTTP: fallback, retries, timeouts, streaming, headers."""

from __future__ import annotations

import orjson
import trio

from server.fake_upstream import Reply
from tests.conftest import ACCOUNT, Stack, arrivals, gaps, sse_data, step

# The seed page's cURL body, verbatim (placeholders included).
SEED_BODY = """[
{
"provider": "workers-ai",
"endpoint": "@cf/meta/llama-3.1-8b-instruct",
"headers": {
"Authorization": "Bearer {cloudflare_token}",
"Content-Type": "application/json"
},
"query": {
"messages": [
{
"role": "system",
"content": "You are a friendly assistant"
},
{
"role": "user",
"content": "What is Cloudflare?"
}
]
}
},
{
"provider": "openai",
"endpoint": "chat/completions",
"headers": {
"Authorization": "Bearer {open_ai_token}",
"Content-Type": "application/json"
},
"query": {
"model": "gpt-4o-mini",
"stream": true,
"messages": [
{
"role": "user",
"content": "What is Cloudflare?"
}
]
}
}
]"""


async def test_seed_curl_falls_back_to_streaming_openai(stack: Stack) -> None:
    stack.fake.script("/ai/run/", Reply(status=500))
    response = await stack.client.post(
        stack.universal_url, content=SEED_BODY, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.headers["cf-aig-step"] == "1"
    assert response.headers["cf-aig-provider"] == "openai"
    assert response.headers["cf-aig-model"] == "gpt-4o-mini"
    assert response.headers["content-type"].startswith("text/event-stream")
    data = sse_data(response.text)
    assert data[-1] == "[DONE]"
    contents = [orjson.loads(d)["choices"][0]["delta"].get("content") for d in data[:-1]]
    assert contents[:5] == [f"tok{i} " for i in range(5)]
    # Workers AI got the seed's request at its model path under the account.
    (wai,) = stack.fake.requests_to("/ai/run/")
    assert wai.path == f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"
    assert wai.headers["authorization"] == "Bearer {cloudflare_token}"
    assert orjson.loads(wai.body)["messages"][0]["content"] == "You are a friendly assistant"


async def test_seed_curl_first_step_answers(stack: Stack) -> None:
    response = await stack.client.post(stack.universal_url, content=SEED_BODY)
    assert response.status_code == 200
    assert response.headers["cf-aig-step"] == "0"
    assert response.json()["result"]["response"] == "Hello from the fake upstream."
    assert response.headers["cf-aig-model"] == "@cf/meta/llama-3.1-8b-instruct"
    # First success stops: the fallback step is never called.
    assert stack.fake.requests_to("/chat/completions") == []


async def test_response_ids(stack: Stack) -> None:
    response = await stack.client.post(stack.universal_url, json=[step()])
    log_id = response.headers["cf-aig-log-id"]
    assert len(log_id) == 36 and log_id[14] == "7"  # a UUIDv7
    assert response.headers["cf-aig-request-id"] == log_id
    assert response.headers["cf-aig-event-id"] == log_id
    again = await stack.client.post(
        stack.universal_url, json=[step()], headers={"cf-aig-event-id": "mine"}
    )
    assert again.headers["cf-aig-event-id"] == "mine"
    assert again.headers["cf-aig-log-id"] != log_id


async def test_single_step_object_is_accepted(stack: Stack) -> None:
    response = await stack.client.post(stack.universal_url, json=step("anthropic"))
    assert response.status_code == 200
    assert response.json()["type"] == "message"
    assert response.headers["cf-aig-step"] == "0"


async def test_legacy_authorization_field(stack: Stack) -> None:
    legacy = step()
    del legacy["headers"]
    legacy["authorization"] = "Bearer legacy"
    await stack.client.post(stack.universal_url, json=[legacy])
    assert stack.fake.requests[-1].headers["authorization"] == "Bearer legacy"


async def test_fallback_on_each_kind_of_failure(stack: Stack, autojump_clock) -> None:
    failures = {
        "500": step(headers={"x-fake-status": "500"}),
        "429": step(headers={"x-fake-status": "429"}),
        "400": step(headers={"x-fake-status": "400"}),
        "refused": step("custom-dead"),
        "dropped": step(headers={"x-fake-drop": "1"}),
        "timeout": step(headers={"x-fake-delay-ms": "5000"}, config={"requestTimeout": 1000}),
    }
    for name, failing in failures.items():
        start = trio.current_time()
        response = await stack.client.post(stack.universal_url, json=[failing, step("anthropic")])
        assert response.status_code == 200, name
        assert response.headers["cf-aig-step"] == "1", name
        assert response.json()["type"] == "message", name
        if name == "timeout":
            assert trio.current_time() - start == 1.0


async def test_all_steps_fail_returns_last_response(stack: Stack) -> None:
    response = await stack.client.post(
        stack.universal_url,
        json=[step(headers={"x-fake-status": "500"}), step(headers={"x-fake-status": "401"})],
    )
    assert response.status_code == 401
    assert response.headers["cf-aig-step"] == "1"
    assert response.json()["error"]["message"] == "fake upstream error 401"


async def test_all_steps_fail_without_response(stack: Stack, autojump_clock) -> None:
    response = await stack.client.post(
        stack.universal_url, json=[step(headers={"x-fake-status": "500"}), step("custom-dead")]
    )
    assert response.status_code == 502
    assert response.headers["cf-aig-step"] == "1"
    body = response.json()
    assert body["success"] is False
    assert body["error"] == [{"code": 2005, "message": "Failed to get response from provider"}]

    timed_out = await stack.client.post(
        stack.universal_url,
        json=[step(headers={"x-fake-delay-ms": "9000"}, config={"requestTimeout": 500})],
    )
    assert timed_out.status_code == 504
    assert timed_out.json()["error"][0] == {"code": 2005, "message": "Request timed out"}


async def test_retries_with_exact_backoff(stack: Stack, autojump_clock) -> None:
    for backoff, want in {
        "constant": [1.0, 1.0, 1.0],
        "linear": [1.0, 2.0, 3.0],
        "exponential": [1.0, 2.0, 4.0],
    }.items():
        key = f"retry-{backoff}"
        failing = step(
            headers={"x-fake-fail-first": "3", "x-fake-key": key},
            config={"maxAttempts": 4, "retryDelay": 1000, "backoff": backoff},
        )
        response = await stack.client.post(stack.universal_url, json=[failing])
        assert response.status_code == 200, backoff
        assert len(arrivals(stack.fake, key)) == 4
        assert gaps(stack.fake, key) == want


async def test_retries_then_fallback(stack: Stack, autojump_clock) -> None:
    failing = step(
        headers={"x-fake-status": "503", "x-fake-key": "a"},
        config={"maxAttempts": 3, "retryDelay": 100},
    )
    response = await stack.client.post(stack.universal_url, json=[failing, step("workers-ai")])
    assert response.headers["cf-aig-step"] == "1"
    assert len(arrivals(stack.fake, "a")) == 3


async def test_non_retryable_status_is_not_retried(stack: Stack) -> None:
    failing = step(
        headers={"x-fake-status": "401", "x-fake-key": "auth"}, config={"maxAttempts": 5}
    )
    response = await stack.client.post(stack.universal_url, json=[failing])
    assert response.status_code == 401
    assert len(arrivals(stack.fake, "auth")) == 1


async def test_header_hierarchy(stack: Stack, autojump_clock) -> None:
    # Request level asks for 3 attempts; the first step overrides it with 1 in its
    # headers, the second inherits the request level.
    first = step(headers={"x-fake-status": "500", "x-fake-key": "s0", "cf-aig-max-attempts": "1"})
    second = step(headers={"x-fake-status": "500", "x-fake-key": "s1"})
    await stack.client.post(
        stack.universal_url,
        json=[first, second],
        headers={"cf-aig-max-attempts": "3", "cf-aig-retry-delay": "10"},
    )
    count = {k: len(arrivals(stack.fake, k)) for k in ("s0", "s1")}
    assert count == {"s0": 1, "s1": 3}
    # step config beats the step's own cf-aig header.
    third = step(
        headers={"x-fake-status": "500", "x-fake-key": "s2", "cf-aig-max-attempts": "4"},
        config={"maxAttempts": 2},
    )
    await stack.client.post(stack.universal_url, json=[third])
    assert len(arrivals(stack.fake, "s2")) == 2


async def test_request_timeout_header_applies_to_every_step(stack: Stack, autojump_clock) -> None:
    start = trio.current_time()
    response = await stack.client.post(
        stack.universal_url,
        json=[
            step(headers={"x-fake-delay-ms": "10000"}),
            step(headers={"x-fake-delay-ms": "10000"}),
            step("anthropic"),
        ],
        headers={"cf-aig-request-timeout": "2000"},
    )
    assert response.headers["cf-aig-step"] == "2"
    assert trio.current_time() - start == 4.0


async def test_cf_aig_headers_never_go_upstream(stack: Stack) -> None:
    await stack.client.post(
        stack.universal_url,
        json=[step(headers={"cf-aig-cache-ttl": "0", "CF-AIG-Metadata": "{}"})],
        headers={"cf-aig-authorization": "Bearer gw", "cf-aig-cache-ttl": "3600"},
    )
    sent = stack.fake.requests[-1].headers
    assert not [name for name in sent if name.startswith("cf-aig")]
    assert sent["authorization"] == "Bearer test-key"


async def test_stream_arrives_incrementally(stack: Stack) -> None:
    gate = stack.fake.gate("incremental")
    body = [step(stream=True, headers={"x-fake-hold": "incremental"})]
    async with stack.client.stream("POST", stack.universal_url, json=body) as response:
        chunks = response.aiter_bytes()
        first = await chunks.__anext__()
        # The upstream is still holding the rest: the first chunk came on its own.
        assert not gate.is_set()
        assert b"tok0" in first
        gate.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert rest.endswith(b"data: [DONE]\n\n")


async def test_first_event_error_falls_back(stack: Stack) -> None:
    for provider in ("openai", "anthropic"):
        body = [
            step(provider, stream=True, headers={"x-fake-stream-error": "1"}),
            step("workers-ai", stream=True),
        ]
        response = await stack.client.post(stack.universal_url, json=body)
        assert response.status_code == 200
        assert response.headers["cf-aig-step"] == "1", provider
        assert orjson.loads(sse_data(response.text)[0]) == {"response": "tok0 "}


async def test_cut_after_commit_ends_with_error_event(stack: Stack) -> None:
    body = [step(stream=True, headers={"x-fake-cut-after": "3"}), step("anthropic")]
    response = await stack.client.post(stack.universal_url, json=body)
    assert response.status_code == 200
    assert response.headers["cf-aig-step"] == "0"  # committed: no mid-stream fallback
    data = sse_data(response.text)
    assert "[DONE]" not in data
    assert len(data) == 4
    assert orjson.loads(data[-1])["error"]["message"] == "Upstream stream ended unexpectedly"
    assert "event: error" in response.text


async def test_concurrent_requests_with_mixed_failures(stack: Stack) -> None:
    kinds = {
        0: ([step()], 200, "0"),
        1: ([step(headers={"x-fake-status": "500"}), step("anthropic")], 200, "1"),
        2: ([step("custom-dead"), step("workers-ai")], 200, "1"),
        3: ([step(headers={"x-fake-status": "404"})], 404, "0"),
        4: ([step(stream=True)], 200, "0"),
    }
    results: dict[int, tuple[int, str, bytes]] = {}

    async def one(i: int) -> None:
        body, _, _ = kinds[i % 5]
        response = await stack.client.post(stack.universal_url, json=body)
        results[i] = (response.status_code, response.headers["cf-aig-step"], response.content)

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(one, i)
    assert len(results) == 200
    for i, (status, step_header, content) in results.items():
        _, want_status, want_step = kinds[i % 5]
        assert (status, step_header) == (want_status, want_step), i
        if i % 5 == 4:
            assert content.endswith(b"data: [DONE]\n\n")


async def test_client_disconnect_cancels_upstream(stack: Stack, autojump_clock) -> None:
    # Mid-stream: the client reads the first chunk, then goes away.
    body = [step(stream=True, headers={"x-fake-hold": "gone"})]
    async with stack.client.stream("POST", stack.universal_url, json=body) as response:
        await response.aiter_bytes().__anext__()
    with trio.fail_after(5):
        await stack.fake.hangup("hold:gone").wait()

    # Mid-request: the client gives up while the upstream is still thinking.
    with trio.move_on_after(1):
        await stack.client.post(
            stack.universal_url, json=[step(headers={"x-fake-delay-ms": "60000"})]
        )
    with trio.fail_after(5):
        await stack.fake.hangup("/v1/chat/completions").wait()
    # The gateway is still serving.
    assert (await stack.client.post(stack.universal_url, json=[step()])).status_code == 200
