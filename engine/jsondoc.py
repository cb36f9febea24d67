"""JSON documents the gateway parses: one rule for how deep they may nest.

orjson parses up to 1,024 levels but serialises only about 255, so a body that
parsed could fail when the gateway writes it again for the upstream. Every
document the gateway looks into is therefore checked against `MAX_DEPTH` while
it is parsed, and refused with a 400 that names the limit.
"""

from __future__ import annotations

from typing import Any

import orjson

from engine.errors import bad_request

# Levels of arrays and objects, the outermost counting as 1. Far above any
# real request (a chat body nests about 6 deep, a JSON schema a few dozen),
# far below what orjson can write back.
MAX_DEPTH = 128


def loads(raw: bytes | str, what: str = "Request body") -> Any:
    """Parse `raw`, raising a 400 GatewayError for invalid or too-deep JSON."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise too_deep(what) from None
        raise bad_request(f"{what} must be valid JSON") from None
    if not fits(data, raw):
        raise too_deep(what)
    return data


def too_deep(what: str) -> Exception:
    return bad_request(f"{what} nests deeper than {MAX_DEPTH} levels of arrays and objects")


def fits(data: Any, raw: bytes | str | None = None) -> bool:
    """True when `data` nests at most MAX_DEPTH levels.

    With the raw text at hand the check is nearly free for ordinary bodies: a
    document cannot nest deeper than it has opening brackets.
    """
    if raw is not None:
        if isinstance(raw, bytes):
            opens = raw.count(b"[") + raw.count(b"{")
        else:
            opens = raw.count("[") + raw.count("{")
        if opens <= MAX_DEPTH:
            return True
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_DEPTH:
            return False
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def peek(raw: bytes | str, what: str = "Request body") -> Any:
    """Parse a body the gateway only looks into (a provider-native request).

    Not JSON: None, and the body goes upstream as sent for the provider to
    judge. Valid JSON nesting too deep: the same 400 as everywhere else.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise too_deep(what) from None
        return None
    if not fits(data, raw):
        raise too_deep(what)
    return data
