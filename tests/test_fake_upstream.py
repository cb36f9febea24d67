"""The fake upstream is what every gateway test leans on, so each of its controls is proven here
against the real server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import trio

from server.fake_upstream import FakeUpstream, Reply

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
WORKERS = "/client/v4/accounts/ACCT/ai/run/@cf/meta/llama-3.1-8b-instruct"


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeUpstream:
    upstream = FakeUpstream()
    await nursery.start(upstream.serve)
    return upstream


@pytest.fixture
async def client(fake: FakeUpstream) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{fake.port}"
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=5) as c:
        yield c


def sse_data(raw: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE body, in order."""
    return [
        line[6:]
        for event in raw.split(b"\n\n")
        for line in event.split(b"\n")
        if line[:6] == b"data: "
    ]


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes and read until the server closes: for what httpx would refuse to send."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        received = b""
        with trio.fail_after(2):
            while data := await stream.receive_some():
                received += data
    return received


async def test_routes_shapes_and_recording(fake: FakeUpstream, client: httpx.AsyncClient) -> None:
    r = await client.post(f"{CHAT}?x=1", json={"model": "gpt-test", "messages": []})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["model"] == "gpt-test"
    assert body["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    assert body["usage"]["total_tokens"] == 16

    r = await client.post(MESSAGES, json={"model": "claude-test", "max_tokens": 5})
    assert r.json()["content"][0]["text"] == "Hello from the fake upstream."
    assert r.json()["model"] == "claude-test"

    r = await client.post(WORKERS, json={"messages": []})
    assert r.json() == {
        "result": {"response": "Hello from the fake upstream."},
        "success": True,
        "errors": [],
        "messages": [],
    }

    r = await client.post("/nowhere", json={})
    assert r.status_code == 404
    assert "error" in r.json()

    assert [q.path for q in fake.requests] == [f"{CHAT}?x=1", MESSAGES, WORKERS, "/nowhere"]
    first = fake.requests_to("chat/completions")[0]
    assert first.method == "POST"
    assert first.headers["content-type"] == "application/json"
    assert orjson.loads(first.body)["model"] == "gpt-test"
    assert first.time <= fake.requests[-1].time


@pytest.mark.parametrize(
    ("path", "check"),
    [
        (CHAT, lambda b: b["error"]["message"] == "fake upstream error 503"),
        (MESSAGES, lambda b: b["type"] == "error" and b["error"]["type"] == "api_error"),
        (WORKERS, lambda b: b["success"] is False and b["errors"][0]["code"] == 7009),
    ],
)
async def test_status_header_gives_provider_error(client: httpx.AsyncClient, path, check) -> None:
    r = await client.post(path, json={}, headers={"x-fake-status": "503"})
    assert r.status_code == 503
    assert check(r.json())


async def test_delay_uses_trio_clock(
    autojump_clock: trio.testing.MockClock, fake: FakeUpstream
) -> None:
    # 250 s of fake delay finishes instantly under the autojump clock (no client timeout to race).
    base = f"http://127.0.0.1:{fake.port}"
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=None) as c:
        start = trio.current_time()
        r = await c.post(CHAT, json={}, headers={"x-fake-delay-ms": "250000"})
    assert r.status_code == 200
    assert trio.current_time() - start >= 250


async def test_drop_closes_without_reply(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(CHAT, json={}, headers={"x-fake-drop": "1"})
    assert (await client.post(CHAT, json={})).status_code == 200  # server survived


async def test_openai_stream_events_and_chunking(client: httpx.AsyncClient) -> None:
    body = {"model": "m", "stream": True}
    async with client.stream("POST", CHAT, json=body, headers={"x-fake-chunks": "3"}) as r:
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["transfer-encoding"] == "chunked"
        pieces = [piece async for piece in r.aiter_raw()]
    assert len(pieces) == 5  # 3 content + finish/usage + [DONE], one HTTP chunk each
    payloads = sse_data(b"".join(pieces))
    assert payloads[-1] == b"[DONE]"
    events = [orjson.loads(p) for p in payloads[:-1]]
    assert [e["choices"][0]["delta"].get("content") for e in events] == [
        "tok0 ",
        "tok1 ",
        "tok2 ",
        None,
    ]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["usage"]["total_tokens"] == 16


async def test_hold_gates_the_rest_of_the_stream(
    fake: FakeUpstream, client: httpx.AsyncClient
) -> None:
    headers = {"x-fake-hold": "g", "x-fake-chunks": "4"}
    arrivals: list[tuple[float, bytes]] = []
    first = trio.Event()

    async def read_all() -> None:
        async with client.stream("POST", WORKERS, json={"stream": True}, headers=headers) as r:
            async for piece in r.aiter_raw():
                arrivals.append((trio.current_time(), piece))
                first.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await first.wait()
        await trio.sleep(0.05)  # time enough for the rest to arrive, were it not held
        assert [sse_data(p) for _, p in arrivals] == [[b'{"response":"tok0 "}']]
        opened = trio.current_time()
        fake.gate("g").set()
    assert len(arrivals) == 5  # tok0..tok3 + [DONE]
    assert all(t >= opened for t, _ in arrivals[1:])
    assert sse_data(arrivals[-1][1]) == [b"[DONE]"]


async def test_cut_after_closes_mid_stream(client: httpx.AsyncClient) -> None:
    got = b""
    with pytest.raises(httpx.RemoteProtocolError):
        headers = {"x-fake-cut-after": "2", "x-fake-chunk-delay-ms": "1"}
        async with client.stream("POST", CHAT, json={"stream": True}, headers=headers) as r:
            async for piece in r.aiter_raw():
                got += piece
    assert [orjson.loads(p)["choices"][0]["delta"]["content"] for p in sse_data(got)] == [
        "tok0 ",
        "tok1 ",
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (CHAT, b'data: {"error":{"message":"fake upstream stream error","type":"server_error"}}'),
        (MESSAGES, b"event: error\ndata: "),
        (WORKERS, b'data: {"error":'),
    ],
)
async def test_stream_error_first_event(
    client: httpx.AsyncClient, path: str, expected: bytes
) -> None:
    r = await client.post(path, json={"stream": True}, headers={"x-fake-stream-error": "1"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert r.content.startswith(expected)


async def test_fail_first_counts_per_key(client: httpx.AsyncClient) -> None:
    async def status(key: str) -> int:
        headers = {"x-fake-fail-first": "2", "x-fake-key": key}
        return (await client.post(CHAT, json={}, headers=headers)).status_code

    assert [await status("a"), await status("a"), await status("b"), await status("a")] == [
        500,
        500,
        500,
        200,
    ]
    assert await status("b") == 500
    assert await status("b") == 200


async def test_script_overrides_headers_then_resumes(
    fake: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake.script("/chat/", Reply(status=429), Reply(body=b'{"custom":true}'))
    headers = {"x-fake-status": "502"}
    r1 = await client.post(CHAT, json={}, headers=headers)
    r2 = await client.post(CHAT, json={}, headers=headers)
    r3 = await client.post(CHAT, json={}, headers=headers)
    assert (r1.status_code, r2.status_code, r3.status_code) == (429, 200, 502)
    assert r2.json() == {"custom": True}
    assert r1.json()["error"]["message"] == "fake upstream error 429"
    fake.script("/v1/messages", Reply(drop=True))
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(MESSAGES, json={})
    assert (await client.post(MESSAGES, json={})).status_code == 200


async def test_raw_http_keepalive_pipelining_close_and_chunked_body(fake: FakeUpstream) -> None:
    body = b'{"model":"piped"}'
    one = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    chunked = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b'Connection: close\r\n\r\n4\r\n{"mo\r\ne\r\ndel":"chunky"}\r\n0\r\n\r\n'
    )
    received = await raw_exchange(fake.port, one + one + chunked)
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert received.count(b'"model":"piped"') == 2
    assert b"connection: close" in received
    assert fake.requests[-1].body == b'{"model":"chunky"}'


async def test_malformed_request_gets_400_and_server_survives(
    fake: FakeUpstream, client: httpx.AsyncClient
) -> None:
    received = await raw_exchange(fake.port, b"NONSENSE\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in received
    received = await raw_exchange(fake.port, b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400 ")
    # A client vanishing mid-stream must not take the server down either.
    stream = await trio.open_tcp_stream("127.0.0.1", fake.port)
    await stream.send_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 15\r\n"
        b"x-fake-chunk-delay-ms: 5\r\nx-fake-chunks: 50\r\n\r\n"
        b'{"stream":true}'
    )
    await stream.receive_some()
    await stream.aclose()
    assert (await client.post(CHAT, json={})).status_code == 200


async def test_anthropic_sdk_parses_the_stream(fake: FakeUpstream) -> None:
    anthropic = pytest.importorskip("anthropic")
    sdk = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{fake.port}", api_key="k")
    async with sdk.messages.stream(
        model="claude-test",
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-fake-chunks": "3"},
    ) as stream:
        assert await stream.get_final_text() == "tok0 tok1 tok2 "
        message = await stream.get_final_message()
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 7
