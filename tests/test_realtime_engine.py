"""Realtime passthrough without sockets: upstream URLs, handshake headers, close codes, masking.

No sockets: these check where a session would go against the built-in provider
bases (the real hosts), which the socket tests cannot reach.
"""

from __future__ import annotations

import pytest

from engine.config import GatewaySettings
from engine.errors import GatewayError
from engine.plan import Context
from engine.realtime import RealtimeRequest, plan_realtime, refused, relay_close, take_param
from engine.urls import parse_base_url
from providers import Registry
from server.wsmask import FastXorMasker

ACCOUNT = "acct123"


def plan(tail: str, headers: list[tuple[bytes, bytes]] | None = None, protocols: tuple = ()):
    path, _, query = tail.partition("?")
    provider, _, rest = path.partition("/")
    ctx = Context.build(Registry().resolve, ACCOUNT, {}, GatewaySettings())
    return plan_realtime(RealtimeRequest(provider, rest, query, headers or [], protocols), ctx)


def url(tail: str) -> str:
    p = plan(tail)
    scheme = "wss" if p.secure else "ws"
    return f"{scheme}://{p.origin.host_header}{p.target}"


@pytest.mark.parametrize(
    ("tail", "upstream"),
    [
        (
            "openai?model=gpt-4o-realtime-preview-2024-12-17",
            "wss://api.openai.com/v1/realtime?model=gpt-4o-realtime-preview-2024-12-17",
        ),
        ("openai/realtime?model=m", "wss://api.openai.com/v1/realtime?model=m"),
        ("openai/v1/realtime?model=m", "wss://api.openai.com/v1/realtime?model=m"),
        (
            "google?api_key=KEY",
            "wss://generativelanguage.googleapis.com"
            "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        ),
        (
            "cartesia?cartesia_version=2024-06-10&api_key=KEY",
            "wss://api.cartesia.ai/tts/websocket?cartesia_version=2024-06-10&api_key=KEY",
        ),
        ("elevenlabs?agent_id=A1", "wss://api.elevenlabs.io/v1/convai/conversation?agent_id=A1"),
        ("fal/fal-ai/fast-lcm-diffusion", "wss://ws.fal.run/fal-ai/fast-lcm-diffusion"),
        (
            "workers-ai?model=@cf/deepgram/nova-3&encoding=linear16&sample_rate=16000",
            f"wss://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai/run/@cf/deepgram/nova-3"
            "?encoding=linear16&sample_rate=16000",
        ),
        (
            "workers-ai/@cf/deepgram/aura-1",
            f"wss://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai/run/@cf/deepgram/aura-1",
        ),
        ("deepgram?model=nova-3", "wss://api.deepgram.com/v1/listen?model=nova-3"),
        ("deepgram/v1/listen?model=nova-3", "wss://api.deepgram.com/v1/listen?model=nova-3"),
    ],
)
def test_built_in_realtime_upstreams(tail: str, upstream: str) -> None:
    assert url(tail) == upstream


def test_model_is_read_for_the_record() -> None:
    assert plan("openai?model=gpt-4o-realtime").model == "gpt-4o-realtime"
    assert plan("workers-ai?model=@cf/deepgram/flux").model == "@cf/deepgram/flux"
    assert plan("workers-ai/@cf/deepgram/aura-1").model == "@cf/deepgram/aura-1"


def test_a_configured_base_wins_over_the_realtime_host() -> None:
    fal_base = parse_base_url("http://127.0.0.1:9000/fal")
    ctx = Context.build(Registry({"fal": fal_base}).resolve, ACCOUNT, {}, GatewaySettings())
    p = plan_realtime(RealtimeRequest("fal", "fal-ai/x", "", [], ()), ctx)
    assert (p.origin.host, p.origin.port, p.target, p.secure) == (
        "127.0.0.1",
        9000,
        "/fal/fal-ai/x",
        False,
    )


def test_credentials_carried_the_browser_way_become_the_providers_header() -> None:
    p = plan("elevenlabs?agent_id=A", protocols=("xi-api-key.XI", "cf-aig-authorization.T"))
    assert (b"xi-api-key", b"XI") in p.headers
    assert p.subprotocols == []
    assert p.echo == "xi-api-key.XI"
    p = plan("fal/fal-ai/x", [(b"authorization", b"Key old")], ("fal-api-key.NEW",))
    assert [v for k, v in p.headers if k == b"authorization"] == [b"Key NEW"]
    p = plan("google?api_key=G1&alt=x")
    assert (b"x-goog-api-key", b"G1") in p.headers
    assert p.target.endswith("BidiGenerateContent?alt=x")


def test_handshake_headers_that_stay_behind() -> None:
    sent = [
        (b"authorization", b"Bearer sk"),
        (b"openai-beta", b"realtime=v1"),
        (b"cf-aig-authorization", b"Bearer T"),
        (b"cf-aig-metadata", b"{}"),
        (b"cookie", b"session=1"),
        (b"origin", b"http://localhost:3000"),
        (b"sec-websocket-key", b"abc"),
        (b"upgrade", b"websocket"),
    ]
    p = plan(
        "openai?model=m", sent, ("realtime", "cf-aig-authorization.T", "openai-beta.realtime-v1")
    )
    assert p.headers == [(b"authorization", b"Bearer sk"), (b"openai-beta", b"realtime=v1")]
    assert p.subprotocols == ["realtime", "openai-beta.realtime-v1"]
    assert p.echo == "realtime"


@pytest.mark.parametrize(
    ("tail", "protocols", "message"),
    [
        ("nope?x=1", (), "Invalid provider"),
        ("workers-ai?encoding=linear16", (), "needs a model"),
        ("openai/../../etc?x", (), "'..'"),
        ("google?api_key=a%0Db", (), "not a valid header value"),
    ],
)
def test_bad_realtime_requests_are_400(tail: str, protocols: tuple, message: str) -> None:
    with pytest.raises(GatewayError) as info:
        plan(tail, protocols=protocols)
    assert info.value.status == 400
    assert message in info.value.message


def test_take_param_keeps_the_rest_as_sent() -> None:
    assert take_param("a=1&model=%40cf%2Fx&b=%2F", "model") == ("@cf/x", "a=1&b=%2F")
    assert take_param("a=1", "model") == (None, "a=1")
    assert take_param("", "model") == (None, "")


@pytest.mark.parametrize(
    ("close", "by", "other"),
    [
        ((4001, "bye"), "client", (4001, "bye")),
        ((1000, None), "upstream", (1000, None)),
        ((1005, None), "client", (1000, None)),
        ((1006, None), "client", (1001, "client went away")),
        ((1006, None), "upstream", (1014, "upstream connection lost")),
        (
            (1009, "Exceeded maximum message size: 10 bytes"),
            "upstream",
            (1009, "upstream message larger than ws_max_frame_bytes (10 bytes)"),
        ),
        ((1009, "too big for me"), "upstream", (1009, "too big for me")),
    ],
)
def test_a_close_is_told_to_the_other_side(close: tuple, by: str, other: tuple) -> None:
    assert relay_close(*close, by, 10) == other


def test_refusals_keep_the_status_in_the_code() -> None:
    assert refused(401) == (4401, "upstream refused the WebSocket handshake: HTTP 401")
    assert refused(429)[0] == 4429
    assert refused(302)[0] == 1014


@pytest.mark.parametrize("chunks", [[0], [1], [3, 4, 5], [1000, 7, 65537], [2, 2, 2, 2, 9]])
def test_fast_masking_is_rfc_6455_xor(chunks: list[int]) -> None:
    key = bytes([0x37, 0xFA, 0x21, 0x3D])
    data = bytes(range(256)) * (sum(chunks) // 256 + 1)
    data = data[: sum(chunks)]
    masker, out, at = FastXorMasker(bytearray(key)), b"", 0
    for size in chunks:  # one frame's payload, arriving in pieces
        out += masker.process(bytearray(data[at : at + size]))
        at += size
    assert out == bytes(b ^ key[i % 4] for i, b in enumerate(data))
