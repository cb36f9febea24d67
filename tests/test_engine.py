"""The sans-IO core, tested without sockets or clocks."""

from __future__ import annotations

import re
import time
import tomllib
import uuid
from pathlib import Path

import pytest

from engine.config import ConfigError, GatewaySettings, load_config
from engine.errors import GatewayError
from engine.ids import uuid7
from engine.retry import Failure, Handling, Schedule, resolve_handling
from engine.sse import Relay, error_event, first_event_end, is_error_event, parse_event
from engine.steps import StepConfig
from engine.urls import check_endpoint, parse_base_url, upstream_target
from providers import Registry, is_built_in

# --- retry schedule -------------------------------------------------------------


def test_backoff_formulas() -> None:
    assert [Handling(retry_delay=500).delay_before(n) for n in (1, 2, 3)] == [0.5] * 3
    linear = Handling(retry_delay=500, backoff="linear")
    assert [linear.delay_before(n) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]
    exponential = Handling(retry_delay=500, backoff="exponential")
    assert [exponential.delay_before(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert Handling(retry_delay=50_000, backoff="exponential").delay_before(3) == 60.0


def test_schedule_retries_then_falls_back() -> None:
    schedule = Schedule([Handling(max_attempts=2, retry_delay=100), Handling()])
    assert (schedule.current.step, schedule.current.number) == (0, 1)
    retry = schedule.after(Failure("status", 503))
    assert (retry.step, retry.number, retry.delay) == (0, 2, 0.1)
    fallback = schedule.after(Failure("network"))
    assert (fallback.step, fallback.number, fallback.delay) == (1, 1, 0.0)
    assert schedule.after(Failure("timeout")) is None


def test_non_retryable_status_skips_retries_but_falls_back() -> None:
    schedule = Schedule([Handling(max_attempts=5), Handling()])
    assert schedule.after(Failure("status", 401)).step == 1


def test_fallback_on_retryable_only() -> None:
    schedule = Schedule([Handling(), Handling()], fallback_on="retryable_only")
    assert schedule.after(Failure("status", 400)) is None
    schedule = Schedule([Handling(), Handling()], fallback_on="retryable_only")
    assert schedule.after(Failure("status", 429)).step == 1


def test_last_retry_waits_without_limit() -> None:
    schedule = Schedule(
        [Handling(request_timeout=1000), Handling(request_timeout=2000, max_attempts=2)]
    )
    assert schedule.current.timeout == 1.0
    assert schedule.after(Failure("timeout")).timeout == 2.0
    assert schedule.after(Failure("timeout")).timeout is None  # final retry: no limit
    # Without retries the timeout holds, so the client gets a 504 rather than a hang.
    assert Schedule([Handling(request_timeout=1000)]).current.timeout == 1.0


def test_handling_hierarchy() -> None:
    gateway = GatewaySettings(retry_max_attempts=2, retry_delay=100, request_timeout=9000)
    request = {"cf-aig-max-attempts": "3", "cf-aig-backoff": "linear"}
    step_headers = {"cf-aig-max-attempts": "4", "cf-aig-retry-delay": "nonsense"}
    handling = resolve_handling(StepConfig(request_timeout=500), step_headers, request, gateway)
    assert handling == Handling(
        request_timeout=500, max_attempts=4, retry_delay=100, backoff="linear"
    )
    # Out-of-range header values fall through to the next level.
    handling = resolve_handling(StepConfig(), {"cf-aig-max-attempts": "9"}, {}, gateway)
    assert handling.max_attempts == 2 and handling.request_timeout == 9000


# --- SSE -------------------------------------------------------------------------


def test_first_event_and_error_detection() -> None:
    stream = b': keep-alive\n\ndata: {"error": {"message": "boom"}}\n\ndata: x\n\n'
    end = first_event_end(stream)
    assert stream[:end].endswith(b'boom"}}\n\n')
    assert is_error_event(parse_event(stream[14:end]))
    assert is_error_event(parse_event(b'event: error\ndata: {"type":"error"}\n\n'))
    assert not is_error_event(parse_event(b'data: {"choices": []}\n\n'))
    assert not is_error_event(parse_event(b"data: [DONE]\n\n"))
    assert first_event_end(b"data: partial") == -1
    assert first_event_end(b"data: crlf\r\n\r\n") == 14


def test_relay_never_sends_half_an_event() -> None:
    relay = Relay()
    assert relay.feed(b"data: one\n\ndata: tw") == b"data: one\n\n"
    assert relay.feed(b"o\n") == b""
    assert relay.feed(b"\ndata: three\n\n") == b"data: two\n\ndata: three\n\n"
    assert relay.feed(b"data: tail") == b""
    assert relay.finish() == b"data: tail"


def test_relay_does_not_buffer_a_stream_without_boundaries() -> None:
    relay = Relay()
    big = b"x" * (70 * 1024)
    assert relay.feed(big) == big


def test_error_event_shape() -> None:
    event = parse_event(error_event("cut", 2005))
    assert event.event == "error"
    assert is_error_event(event)


# --- URLs and SSRF -----------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "../secrets",
        "a/../../b",
        "%2e%2e/x",
        "a/%2E%2E/b",
        "http://evil/x",
        "//evil/x",
        "a\\..\\b",
        "a b",
        "x\r\nHost: evil",
        "a#frag",
        "file:/etc/passwd",
    ],
)
def test_unsafe_endpoints_are_refused(endpoint: str) -> None:
    with pytest.raises(GatewayError) as info:
        check_endpoint(endpoint)
    assert info.value.status == 400


def test_upstream_targets() -> None:
    base = parse_base_url("https://api.openai.com/v1")
    assert upstream_target(base, *check_endpoint("chat/completions"), "a") == (
        b"/v1/chat/completions"
    )
    # The double-/v1 mistake is forgiven.
    assert upstream_target(base, *check_endpoint("v1/chat/completions"), "a") == (
        b"/v1/chat/completions"
    )
    assert upstream_target(base, *check_endpoint("/models?limit=2"), "a") == b"/v1/models?limit=2"
    registry = Registry()
    spec, wai = registry.resolve("workers-ai")
    path, query = check_endpoint("@cf/meta/llama-3.1-8b-instruct")
    assert upstream_target(wai, spec.route(path), query, "acc") == (
        b"/client/v4/accounts/acc/ai/run/@cf/meta/llama-3.1-8b-instruct"
    )
    assert upstream_target(wai, spec.route("v1/chat/completions"), "", "acc") == (
        b"/client/v4/accounts/acc/ai/v1/chat/completions"
    )


@pytest.mark.parametrize(
    "url", ["ftp://x", "https://", "https://u:p@h/", "https://h/?q=1", "https://h:99999/"]
)
def test_bad_base_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_base_url(url)


# --- config ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"sever": {}}, "sever: unknown key"),
        ({"server": {"http_port": "80"}}, "server.http_port: expected an integer"),
        ({"server": {"http_port": 70000}}, "server.http_port: must be between"),
        ({"server": {"access_log": 1}}, "server.access_log: expected a boolean"),
        ({"providers": {"openia": {}}}, "providers.openia: unknown provider"),
        ({"providers": {"openai": {"base_url": "api.openai.com"}}}, "providers.openai.base_url"),
        ({"providers": {"custom-x": {}}}, "providers.custom-x.base_url: required"),
        ({"gateways": {"g": {"cache_tll": 5}}}, "gateways.g.cache_tll: unknown key"),
        ({"gateways": {"g": {"retry_max_attempts": 7}}}, "gateways.g.retry_max_attempts"),
        ({"gateways": {"g": {"rate_limit": {"limit": 1}}}}, "gateways.g.rate_limit.interval"),
        ({"gateways": {"bad id!": {}}}, "gateways.bad id!"),
    ],
)
def test_config_errors_name_the_key(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_config(data, is_built_in)
    assert needle in str(info.value)


def test_config_defaults_and_overrides() -> None:
    config = load_config(
        {
            "server": {"http_port": 9000},
            "providers": {
                "openai": {"base_url": "http://127.0.0.1:9001/v1"},
                "custom-mine": {"base_url": "https://llm.example.com"},
            },
            "gateways": {"g": {"token": "t", "rate_limit": {"limit": 5, "interval": 60}}},
        },
        is_built_in,
    )
    assert config.server.http_port == 9000 and config.server.ws_port == 8788
    assert config.gateway("g").tokens.match("t")
    assert not config.gateway("other").tokens
    registry = Registry(config.providers)
    assert str(registry.resolve("openai")[1]) == "http://127.0.0.1:9001/v1"
    assert registry.resolve("custom-mine")[0].slug == "custom-mine"
    assert registry.resolve("custom-other") is None


# --- ids ---------------------------------------------------------------------------


def test_uuid7_is_time_ordered() -> None:
    ids = [uuid7() for _ in range(50)]
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(ids)) == 50
    ms = int(ids[0].replace("-", "")[:12], 16)
    assert abs(ms - time.time() * 1000) < 5000
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)


def test_readme_configuration_example_loads() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"```toml\n(.*?)```", readme, re.S)
    assert block is not None
    environ = {name: f"value-of-{name}" for name in re.findall(r'env = "(\w+)"', block[1])}
    config = load_config(tomllib.loads(block[1]), is_built_in, environ)
    gateway = config.gateway("my-gateway")
    assert gateway.tokens.match("secret") and gateway.tokens.match("value-of-GATEWAY_TOKEN")
    assert gateway.keys["openai"]["prod"].reveal() == "value-of-OPENAI_PROD_KEY"
    assert config.server.redis_url == "redis://127.0.0.1:6379/0"
    assert "custom-myllm" in config.providers
