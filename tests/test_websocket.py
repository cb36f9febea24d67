"""The Universal Endpoint over WebSocket, driven by the `websockets` library.

`websockets` is an independent implementation; its synchronous client runs in a
worker thread so the gateway and the fake upstream keep running in the test's
trio loop. No test here depends on the clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, open_websocket_url
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from server.fake_upstream import Reply
from tests.conftest import Stack, step

TOKEN = "AI_GATEWAY_TOKEN"


@pytest.fixture
def gateway_settings() -> dict[str, Any]:
    return {"authed": {"token": TOKEN}}


def seed_create(event_id: str = "my-request", stream: bool = False) -> dict[str, Any]:
    """The seed page's WebSocket message."""
    query: dict[str, Any] = {"prompt": "tell me a joke"}
    if stream:
        query["stream"] = True
    return {
        "type": "universal.create",
        "request": {
            "eventId": event_id,
            "provider": "workers-ai",
            "endpoint": "@cf/meta/llama-3.1-8b-instruct",
            "headers": {
                "Authorization": "Bearer WORKERS_AI_TOKEN",
                "Content-Type": "application/json",
            },
            "query": query,
        },
    }


async def talk(url: str, client: Callable[[ClientConnection], Any], **kwargs: Any) -> Any:
    def run() -> Any:
        with connect(url, open_timeout=10, close_timeout=2, **kwargs) as ws:
            return client(ws)

    return await trio.to_thread.run_sync(run)


def until_done(ws: ClientConnection, event_id: str) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = json.loads(ws.recv(timeout=10))
        if message.get("metadata", {}).get("eventId") != event_id:
            continue
        messages.append(message)
        if message["type"] in ("universal.done", "universal.error") or (
            message["type"] == "universal.created" and "response" in message
        ):
            return messages


async def test_seed_websocket_example(stack: Stack) -> None:
    url = stack.ws_url.replace("my-gateway", "authed")

    def client(ws: ClientConnection) -> list[dict[str, Any]]:
        ws.send(json.dumps(seed_create()))
        return until_done(ws, "my-request")

    (created,) = await talk(
        url, client, additional_headers={"cf-aig-authorization": f"Bearer {TOKEN}"}
    )
    assert created["type"] == "universal.created"
    meta = created["metadata"]
    assert meta["eventId"] == "my-request"
    assert meta["step"] == "0"  # a string, as Cloudflare sends it
    assert meta["cacheStatus"] == "MISS"
    assert meta["contentType"] == "application/json"
    assert len(meta["logId"]) == 36
    assert created["response"]["result"]["response"] == "Hello from the fake upstream."
    (sent,) = stack.fake.requests
    assert sent.headers["authorization"] == "Bearer WORKERS_AI_TOKEN"
    assert json.loads(sent.body) == {"prompt": "tell me a joke"}


async def test_websocket_auth(stack: Stack) -> None:
    url = stack.ws_url.replace("my-gateway", "authed")
    with pytest.raises(InvalidStatus) as info:
        await talk(url, lambda ws: None)
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body)["error"][0]["code"] == 2009
    # Browsers cannot set headers: the token may come as a subprotocol, which is echoed.
    protocol = await talk(
        url, lambda ws: ws.subprotocol, subprotocols=[f"cf-aig-authorization.{TOKEN}"]
    )
    assert protocol == f"cf-aig-authorization.{TOKEN}"


async def test_streamed_event(stack: Stack) -> None:
    def client(ws: ClientConnection) -> list[dict[str, Any]]:
        ws.send(json.dumps(seed_create("s1", stream=True)))
        return until_done(ws, "s1")

    messages = await talk(stack.ws_url, client)
    created, *streamed, done = messages
    assert created["type"] == "universal.created" and "response" not in created
    assert created["metadata"]["contentType"] == "text/event-stream"
    assert [m["type"] for m in streamed] == ["universal.stream"] * 5
    assert [m["response"] for m in streamed] == [{"response": f"tok{i} "} for i in range(5)]
    assert streamed[0]["metadata"] == {"eventId": "s1"}
    assert done["type"] == "universal.done"
    assert done["metadata"]["logId"] == created["metadata"]["logId"]


async def test_concurrent_events_on_one_socket(stack: Stack) -> None:
    # Event 0 is held upstream until every other event has been answered: the
    # socket must not serialise them.
    gate = stack.fake.gate("first")

    def client(ws: ClientConnection) -> dict[str, list[dict[str, Any]]]:
        held = seed_create("e0", stream=True)
        held["request"]["headers"]["x-fake-hold"] = "first"
        ws.send(json.dumps(held))
        for i in range(1, 20):
            ws.send(json.dumps(seed_create(f"e{i}", stream=i % 2 == 0)))
        seen: dict[str, list[dict[str, Any]]] = {}
        finished: list[str] = []
        while len(finished) < 20:
            message = json.loads(ws.recv(timeout=10))
            event_id = message["metadata"]["eventId"]
            seen.setdefault(event_id, []).append(message)
            if message["type"] == "universal.done" or (
                "response" in message and message["type"] == "universal.created"
            ):
                finished.append(event_id)
                if len(finished) == 19:
                    trio.from_thread.run_sync(gate.set)
        seen["order"] = finished  # type: ignore[assignment]
        return seen

    seen = await talk(stack.ws_url, client)
    assert seen.pop("order")[-1] == "e0"
    assert sorted(seen) == sorted(f"e{i}" for i in range(20))
    for event_id, messages in seen.items():
        if int(event_id[1:]) % 2 == 0:
            assert [m["type"] for m in messages][-1] == "universal.done"
            assert len(messages) == 7  # created, 5 stream events, done
        else:
            assert [m["type"] for m in messages] == ["universal.created"]


async def test_fallback_inside_universal_create(stack: Stack) -> None:
    stack.fake.script("/ai/run/", Reply(status=500))

    def client(ws: ClientConnection) -> list[dict[str, Any]]:
        first = seed_create("fb")["request"]
        ws.send(json.dumps({"type": "universal.create", "request": [first, step("anthropic")]}))
        return until_done(ws, "fb")

    (created,) = await talk(stack.ws_url, client)
    assert created["metadata"]["step"] == "1"
    assert created["response"]["type"] == "message"


async def test_bad_frames_keep_the_socket_open(stack: Stack) -> None:
    def client(ws: ClientConnection) -> list[dict[str, Any]]:
        answers = []
        for frame in (
            "not json",
            json.dumps({"type": "universal.nope"}),
            json.dumps({"type": "universal.create", "request": {"eventId": "x"}}),
            json.dumps(
                {
                    "type": "universal.create",
                    "request": {"eventId": "y", "provider": "nope", "endpoint": "a"},
                }
            ),
        ):
            ws.send(frame)
            answers.append(json.loads(ws.recv(timeout=10)))
        ws.send(json.dumps(seed_create("after")))
        answers.extend(until_done(ws, "after"))
        return answers

    *errors, ok = await talk(stack.ws_url, client)
    assert [e["type"] for e in errors] == ["universal.error"] * 4
    assert [e["error"]["error"][0]["code"] for e in errors] == [2019, 2019, 2019, 2008]
    assert errors[2]["metadata"]["eventId"] == "x"
    assert ok["type"] == "universal.created"


async def test_stream_cut_after_commit_is_an_error_message(stack: Stack) -> None:
    def client(ws: ClientConnection) -> list[dict[str, Any]]:
        create = seed_create("cut", stream=True)
        create["request"]["headers"]["x-fake-cut-after"] = "2"
        ws.send(json.dumps(create))
        return until_done(ws, "cut")

    created, *streamed, error = await talk(stack.ws_url, client)
    assert created["type"] == "universal.created"
    assert [m["response"] for m in streamed] == [{"response": "tok0 "}, {"response": "tok1 "}]
    assert error["type"] == "universal.error"
    assert error["error"]["error"][0]["message"] == "Upstream stream ended unexpectedly"


async def test_closing_the_socket_cancels_its_events(stack: Stack) -> None:
    def client(ws: ClientConnection) -> str:
        create = seed_create("held", stream=True)
        create["request"]["headers"]["x-fake-hold"] = "ws-gone"
        ws.send(json.dumps(create))
        return json.loads(ws.recv(timeout=10))["type"]  # then leave mid-stream

    assert await talk(stack.ws_url, client) == "universal.created"
    with trio.fail_after(10):
        await stack.fake.hangup("hold:ws-gone").wait()
    # The listener is still serving.
    (created,) = await talk(
        stack.ws_url,
        lambda ws: (ws.send(json.dumps(seed_create("next"))), until_done(ws, "next"))[1],
    )
    assert created["metadata"]["eventId"] == "next"


async def test_idle_socket_is_closed_but_not_while_an_event_runs(
    stack: Stack, autojump_clock: trio.testing.MockClock
) -> None:
    # trio-websocket as the client here: it runs in the test's own trio loop,
    # so the mock clock drives the 270 s idle timeout.
    async with open_websocket_url(stack.ws_url) as ws:
        start = trio.current_time()
        create = seed_create("slow")
        create["request"]["headers"]["x-fake-delay-ms"] = "290000"  # longer than the idle timeout
        await ws.send_message(json.dumps(create))
        created = json.loads(await ws.get_message())
        assert created["metadata"]["eventId"] == "slow"
        assert created["type"] == "universal.created"
        assert trio.current_time() - start == 290.0  # the busy socket stayed open
        with pytest.raises(ConnectionClosed) as info:
            await ws.get_message()
        assert info.value.reason.code == 1000
        assert trio.current_time() - start == 290.0 + 270.0


async def test_quiet_socket_closes_after_the_idle_timeout(
    stack: Stack, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_websocket_url(stack.ws_url) as ws:
        start = trio.current_time()
        await trio.sleep(200)
        await ws.send_message(json.dumps(seed_create("ping")))
        assert json.loads(await ws.get_message())["type"] == "universal.created"
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
        assert trio.current_time() - start == 200.0 + 270.0  # measured from the last activity
