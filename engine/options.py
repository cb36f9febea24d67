"""Per-request options: the `cf-aig-*` request headers that shape caching, logging and keys.

Retry and timeout headers live in `engine.retry`; everything else a client can
set per request or per Universal step is parsed here, once, into `Options`.

# Rules

1. A header that is absent or invalid leaves its option unset (None), so the
   next level of the hierarchy decides: step headers > request headers >
   gateway settings. Invalid values are reported as warnings, never errors.
2. `cf-aig-metadata` keeps at most 5 entries of string, number, boolean or
   null values; keys starting `cf.` are reserved and dropped.
3. `cf-aig-cache-ttl` takes 0 (caching off for this request or step) or
   60..2592000 seconds (one month).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import orjson

MIN_CACHE_TTL = 60
MAX_CACHE_TTL = 2_592_000  # "one month"
MAX_METADATA = 5
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})
_COST_KEYS = ("per_token_in", "per_token_out", "per_cache_read_token", "per_cache_write_token")

Metadata = Mapping[str, "str | int | float | bool | None"]


@dataclass(frozen=True, slots=True)
class CustomCost:
    """`cf-aig-custom-cost`: USD per token; an omitted cache rate is `per_token_in`'s."""

    per_token_in: float | None = None
    per_token_out: float | None = None
    per_cache_read_token: float | None = None
    per_cache_write_token: float | None = None
    total_cost: float | None = None


@dataclass(frozen=True, slots=True)
class Options:
    """The options one level of the hierarchy sets; None means "not set here"."""

    cache_ttl: int | None = None  # seconds; 0 turns caching off
    skip_cache: bool | None = None
    cache_key: str | None = None
    collect_log: bool | None = None
    collect_log_payload: bool | None = None
    metadata: Metadata | None = None
    custom_cost: CustomCost | None = None
    event_id: str | None = None
    byok_alias: str | None = None

    def over(self, base: Options) -> Options:
        """These options, with unset ones taken from the less specific `base`."""
        if base is NO_OPTIONS:
            return self
        if self is NO_OPTIONS:
            return base
        return Options(
            *(
                mine if (mine := getattr(self, f.name)) is not None else getattr(base, f.name)
                for f in fields(self)
            )
        )


NO_OPTIONS = Options()


def parse_options(headers: Mapping[str, str]) -> tuple[Options, list[str]]:
    """Options from one level's `cf-aig-*` headers (lower-cased names), and warnings.

    The common request carries no option header at all: that costs one lookup each.
    """
    if not headers:
        return NO_OPTIONS, []
    warnings: list[str] = []
    found: dict[str, Any] = {}
    ttl = _first(headers, "cf-aig-cache-ttl", "cf-cache-ttl")
    if ttl is not None:
        found["cache_ttl"] = _cache_ttl(ttl, warnings)
    for name, key in (
        (("cf-aig-skip-cache", "cf-skip-cache"), "skip_cache"),
        (("cf-aig-collect-log",), "collect_log"),
        (("cf-aig-collect-log-payload",), "collect_log_payload"),
    ):
        raw = _first(headers, *name)
        if raw is not None:
            found[key] = _boolean(name[0], raw, warnings)
    for name, key in (
        ("cf-aig-cache-key", "cache_key"),
        ("cf-aig-event-id", "event_id"),
        ("cf-aig-byok-alias", "byok_alias"),
    ):
        raw = headers.get(name)
        if raw is not None:
            value = raw.strip()
            if value:
                found[key] = value
            else:
                warnings.append(f"{name}: empty value ignored")
    if (raw := headers.get("cf-aig-metadata")) is not None:
        found["metadata"] = _metadata(raw, warnings)
    if (raw := headers.get("cf-aig-custom-cost")) is not None:
        found["custom_cost"] = _custom_cost(raw, warnings)
    return (Options(**found) if found else NO_OPTIONS), warnings


def _first(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if (value := headers.get(name)) is not None:
            return value
    return None


def _boolean(name: str, raw: str, warnings: list[str]) -> bool | None:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    warnings.append(f"{name}: expected true or false, got {raw[:40]!r}; ignored")
    return None


def _cache_ttl(raw: str, warnings: list[str]) -> int | None:
    try:
        ttl = int(raw.strip())
    except ValueError:
        warnings.append(f"cf-aig-cache-ttl: not an integer: {raw[:40]!r}; ignored")
        return None
    if ttl == 0 or MIN_CACHE_TTL <= ttl <= MAX_CACHE_TTL:
        return ttl
    warnings.append(
        f"cf-aig-cache-ttl: {ttl} is outside 0 or {MIN_CACHE_TTL}..{MAX_CACHE_TTL} s; ignored"
    )
    return None


def _json_object(name: str, raw: str, warnings: list[str]) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        warnings.append(f"{name}: not valid JSON; ignored")
        return None
    if not isinstance(value, dict):
        warnings.append(f"{name}: must be a JSON object; ignored")
        return None
    return value


def _metadata(raw: str, warnings: list[str]) -> Metadata | None:
    value = _json_object("cf-aig-metadata", raw, warnings)
    if value is None:
        return None
    kept: dict[str, str | int | float | bool | None] = {}
    for key, item in value.items():
        if key.startswith("cf."):
            warnings.append(f"cf-aig-metadata: key {key[:40]!r} is reserved; dropped")
            continue
        if item is not None and not isinstance(item, str | int | float | bool):
            warnings.append(f"cf-aig-metadata: {key[:40]!r} must be a scalar; dropped")
            continue
        if len(kept) == MAX_METADATA:
            warnings.append(f"cf-aig-metadata: more than {MAX_METADATA} entries; extra ignored")
            break
        kept[key] = item
    return kept


def _custom_cost(raw: str, warnings: list[str]) -> CustomCost | None:
    value = _json_object("cf-aig-custom-cost", raw, warnings)
    if value is None:
        return None
    rates: dict[str, float] = {}
    for key in (*_COST_KEYS, "total_cost"):
        item = value.get(key)
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            warnings.append(f"cf-aig-custom-cost: {key} must be a number; ignored")
            return None
        if item < 0:
            warnings.append(f"cf-aig-custom-cost: {key} must not be negative; ignored")
            return None
        rates[key] = float(item)
    if not rates:
        warnings.append("cf-aig-custom-cost: no known rate given; ignored")
        return None
    return CustomCost(**rates)
