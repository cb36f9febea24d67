"""Tokens, stored keys and rate-limit arithmetic, without sockets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.config import ConfigError, GatewaySettings, RateLimit, load_config
from engine.errors import GatewayError
from engine.keys import settle_credentials
from engine.ratelimit import FixedCounter, SlidingLog, retry_after
from engine.secrets import Secret, Tokens
from engine.urls import Origin
from providers import BUILT_IN, is_built_in

REQUEST = (b"POST", Origin("https", "api.example.com", 443), b"/v1/chat/completions", b"{}")


def gateways(table: dict[str, Any], environ: dict[str, str] | None = None) -> GatewaySettings:
    return load_config({"gateways": {"g": table}}, is_built_in, environ or {}).gateway("g")


# --- tokens -------------------------------------------------------------------------


def test_token_and_tokens_are_all_accepted() -> None:
    gateway = gateways({"token": "tk1", "tokens": ["tk2", {"env": "THIRD"}]}, {"THIRD": "tk3"})
    for token in ("tk1", "Bearer tk2", "bearer tk3", " tk3 "):
        assert gateway.tokens.match(token)
    for wrong in ("", "tk4", "Bearer ", "tk11", "tk"):
        assert not gateway.tokens.match(wrong)
    assert "tk" not in repr(gateway)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"token": {"env": "MISSING"}}, "gateways.g.token: environment variable MISSING"),
        ({"tokens": ["a", {"env": "GONE"}]}, "gateways.g.tokens[1]: environment variable GONE"),
        ({"tokens": []}, "gateways.g.tokens: expected a non-empty array"),
        ({"token": ""}, "gateways.g.token: must not be empty"),
        ({"token": {"file": "x"}}, 'gateways.g.token: expected a string or { env = "VAR" }'),
        ({"keys": {"openai": {"default": "sk"}}}, "gateways.g.keys: stored keys need"),
        (
            {"token": "t", "keys": {"openai": {"default": {"env": "NOPE"}}}},
            "gateways.g.keys.openai.default: environment variable NOPE is not set",
        ),
        ({"token": "t", "keys": {"nosuch": {"default": "k"}}}, "gateways.g.keys.nosuch: unknown"),
        ({"token": "t", "keys": {"openai": "sk"}}, "gateways.g.keys.openai: expected a table"),
        ({"rate_limit_fail": "maybe"}, "gateways.g.rate_limit_fail: must be one of open, closed"),
        ({"max_concurrent": 0}, "gateways.g.max_concurrent: must be at least 1"),
    ],
)
def test_bad_secrets_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        gateways(table)
    assert message in str(info.value)


def test_stored_keys_resolve_at_start_up() -> None:
    gateway = gateways(
        {
            "token": "t",
            "keys": {
                "openai": {"default": "sk-inline", "prod": {"env": "PROD_KEY"}},
                "anthropic": {"default": {"accessKeyId": "AK", "secret": {"env": "PROD_KEY"}}},
            },
        },
        {"PROD_KEY": "sk-from-env"},
    )
    assert gateway.keys["openai"]["default"].reveal() == "sk-inline"
    assert gateway.keys["openai"]["prod"].reveal() == "sk-from-env"
    assert gateway.keys["anthropic"]["default"].reveal() == {
        "accessKeyId": "AK",
        "secret": "sk-from-env",
    }
    assert "sk-" not in repr(gateway) and "sk-" not in str(gateway.keys)


# --- stored keys --------------------------------------------------------------------

KEYED = GatewaySettings(
    tokens=Tokens.of("gw-token"),
    keys={"openai": {"default": Secret("sk-default"), "prod": Secret("sk-prod")}},
)


def settle(headers: dict[str, str], alias: str | None = None, **kw: Any) -> dict[bytes, bytes]:
    spec = BUILT_IN[kw.pop("provider", "openai")]
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    return dict(settle_credentials(raw, spec, kw.pop("gateway", KEYED), alias, REQUEST))


def test_key_precedence() -> None:
    # The request's own key wins, alias or not.
    assert settle({"authorization": "Bearer sk-own"}, "prod")[b"authorization"] == b"Bearer sk-own"
    assert settle({})[b"authorization"] == b"Bearer sk-default"
    assert settle({}, "prod")[b"authorization"] == b"Bearer sk-prod"
    # A gateway token in the key slot is no provider key: dropped, the stored key goes instead.
    assert settle({"authorization": "Bearer gw-token"})[b"authorization"] == b"Bearer sk-default"
    assert settle({"x-api-key": "gw-token"}) == {b"authorization": b"Bearer sk-default"}
    # An empty slot is no key either.
    assert settle({"authorization": "Bearer "})[b"authorization"] == b"Bearer sk-default"


def test_unknown_alias_and_byok_only() -> None:
    with pytest.raises(GatewayError) as info:
        settle({}, "staging")
    assert (info.value.status, info.value.code) == (400, 2040)
    assert info.value.message == (
        "Provider 'openai' has no BYOK credential named 'staging'. "
        "Configured aliases: 'default', 'prod'"
    )
    with pytest.raises(GatewayError) as info:
        settle({}, "prod", provider="anthropic")  # no keys for this provider at all
    assert "Configured aliases: none" in info.value.message
    strict = GatewaySettings(byok_only=True)
    with pytest.raises(GatewayError) as info:
        settle({}, gateway=strict)
    assert (info.value.status, info.value.code, info.value.message) == (
        400,
        2042,
        "Provider credentials required",
    )
    assert settle({"authorization": "Bearer sk-own"}, gateway=strict)


@pytest.mark.parametrize(
    ("provider", "header", "value"),
    [
        ("openai", b"authorization", b"Bearer sk-1"),
        ("groq", b"authorization", b"Bearer sk-1"),
        ("mistral", b"authorization", b"Bearer sk-1"),
        ("workers-ai", b"authorization", b"Bearer sk-1"),
        ("anthropic", b"x-api-key", b"sk-1"),
    ],
)
def test_injected_in_each_providers_own_header(provider: str, header: bytes, value: bytes) -> None:
    gateway = GatewaySettings(tokens=Tokens.of("t"), keys={provider: {"default": Secret("sk-1")}})
    assert settle({}, provider=provider, gateway=gateway) == {header: value}


def test_a_signer_takes_structured_keys() -> None:
    import dataclasses

    seen: list[Any] = []

    def sign(fields: Any, method: bytes, host: str, target: bytes, headers: Any, body: bytes):
        seen.append((dict(fields), method, host, target, body))
        return [*headers, (b"authorization", b"AWS4-HMAC-SHA256 ...")]

    base = BUILT_IN["openai"]
    spec = dataclasses.replace(base, auth=dataclasses.replace(base.auth, sign=sign))
    gateway = GatewaySettings(
        tokens=Tokens.of("t"), keys={"openai": {"default": Secret({"accessKeyId": "AK"})}}
    )
    headers = settle_credentials([], spec, gateway, None, REQUEST)
    assert headers == [(b"authorization", b"AWS4-HMAC-SHA256 ...")]
    assert seen == [({"accessKeyId": "AK"}, b"POST", "api.example.com", REQUEST[2], b"{}")]


# --- rate-limit arithmetic ----------------------------------------------------------


def at(hhmm: str) -> float:
    """Seconds since the epoch of a time on 2026-01-01 (UTC), e.g. "12:09"."""
    hours, minutes = hhmm.split(":")
    return datetime(2026, 1, 1, int(hours), int(minutes), tzinfo=UTC).timestamp()


def test_fixed_window_follows_the_clock() -> None:
    """Cloudflare's example: 10 per 10 min; 10 at 12:09 and 10 at 12:11 all pass."""
    rule, counter = RateLimit(10, 600, "fixed"), FixedCounter()
    assert all(counter.hit(rule, at("12:09")).allowed for _ in range(10))
    refused = counter.hit(rule, at("12:09"))
    assert not refused.allowed and refused.retry_after == 60  # the window ends at 12:10
    assert all(counter.hit(rule, at("12:11")).allowed for _ in range(10))
    assert not counter.hit(rule, at("12:19") + 59).allowed
    assert counter.hit(rule, at("12:20")).allowed  # a new window, exactly at its start


def test_sliding_window_is_exact() -> None:
    rule, log = RateLimit(10, 600, "sliding"), SlidingLog()
    assert all(log.hit(rule, at("12:09")).allowed for _ in range(10))
    refused = log.hit(rule, at("12:11"))
    assert not refused.allowed and refused.retry_after == 8 * 60  # until 12:19
    assert not log.hit(rule, at("12:19") - 0.001).allowed
    # 12:09 has left the trailing 10 minutes; refused requests were never counted.
    assert all(log.hit(rule, at("12:19")).allowed for _ in range(10))
    assert log.hit(rule, at("12:19")).retry_after == 600


def test_retry_after_rounds_up() -> None:
    assert [retry_after(s) for s in (0.0, 0.2, 1.0, 1.01, 59.5)] == [1, 1, 1, 2, 60]
