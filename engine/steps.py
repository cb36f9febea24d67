"""Universal Endpoint request bodies: parsing and validation.

Every rejection names the step and the field, so a client sees exactly which
part of a twenty-step fallback chain is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine import jsondoc
from engine.errors import bad_request

# Cloudflare documents no maximum; 20 keeps a request bounded ([server] max_steps).
MAX_STEPS = 20
# RFC 9110: a header name is a token; a value has no control characters but tab.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
BACKOFFS = ("constant", "linear", "exponential")
MAX_ATTEMPTS = 5  # total attempts, first included
MAX_RETRY_DELAY_MS = 60_000  # the late-2026 docs allow up to 60 s


@dataclass(frozen=True, slots=True)
class StepConfig:
    """A step's own `config`; None means "not set at this level"."""

    request_timeout: int | None = None
    max_attempts: int | None = None
    retry_delay: int | None = None
    backoff: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    provider: str
    endpoint: str
    headers: Mapping[str, str]
    query: Any
    has_query: bool
    config: StepConfig
    event_id: str | None = None  # WebSocket `eventId`


def parse_body(body: bytes, max_steps: int = MAX_STEPS) -> list[Step]:
    """Parse a Universal body: an array of steps, or one step object."""
    return parse_steps(jsondoc.loads(body), max_steps)


def parse_steps(data: Any, max_steps: int = MAX_STEPS) -> list[Step]:
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise bad_request("Request body must be an array of steps or a step object")
    if not data:
        raise bad_request("Request body must contain at least one step")
    if len(data) > max_steps:
        raise bad_request(f"At most {max_steps} steps are allowed, got {len(data)}")
    return [parse_step(item, index) for index, item in enumerate(data)]


def parse_step(item: Any, index: int) -> Step:
    where = f"step {index}"
    if not isinstance(item, dict):
        raise bad_request(f"{where}: must be an object")
    provider = _required_string(item, "provider", where)
    endpoint = _required_string(item, "endpoint", where)
    headers = item.get("headers", {})
    if headers is None:
        headers = {}
    if not isinstance(headers, dict):
        raise bad_request(f"{where}: 'headers' must be an object of strings")
    authorization = item.get("authorization")
    if authorization is not None:
        if not isinstance(authorization, str):
            raise bad_request(f"{where}: 'authorization' must be a string")
        if not any(name.lower() == "authorization" for name in headers):
            headers = {**headers, "Authorization": authorization}
    for name, value in headers.items():
        if not isinstance(value, str):
            raise bad_request(f"{where}: header {name!r} must be a string")
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise bad_request(f"{where}: header {name!r} is not a valid HTTP header")
    event_id = item.get("eventId")
    if event_id is not None and not isinstance(event_id, str):
        raise bad_request(f"{where}: 'eventId' must be a string")
    return Step(
        provider=provider,
        endpoint=endpoint,
        headers=headers,
        query=item.get("query"),
        has_query="query" in item,
        config=_parse_config(item.get("config"), where),
        event_id=event_id,
    )


def _required_string(item: dict[str, Any], name: str, where: str) -> str:
    if name not in item:
        raise bad_request(f"{where}: '{name}' is required")
    value = item[name]
    if not isinstance(value, str) or not value:
        raise bad_request(f"{where}: '{name}' must be a non-empty string")
    return value


def _parse_config(value: Any, where: str) -> StepConfig:
    if value is None:
        return StepConfig()
    if not isinstance(value, dict):
        raise bad_request(f"{where}: 'config' must be an object")

    def number(name: str, low: int, high: int | None) -> int | None:
        raw = value.get(name)
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != int(raw):
            raise bad_request(f"{where}: config.{name} must be an integer")
        if raw < low or (high is not None and raw > high):
            upper = f"..{high}" if high is not None else " or more"
            raise bad_request(f"{where}: config.{name} must be {low}{upper}, got {raw}")
        return int(raw)

    backoff = value.get("backoff")
    if backoff is not None and backoff not in BACKOFFS:
        raise bad_request(f"{where}: config.backoff must be one of {', '.join(BACKOFFS)}")
    return StepConfig(
        request_timeout=number("requestTimeout", 0, None),
        max_attempts=number("maxAttempts", 1, MAX_ATTEMPTS),
        retry_delay=number("retryDelay", 0, MAX_RETRY_DELAY_MS),
        backoff=backoff,
    )
