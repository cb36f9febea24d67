"""Which gateway surface a request path names."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Gateway and account ids: Cloudflare allows at most 64 characters.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # "universal" | "provider" | "health"
    account_id: str = ""
    gateway_id: str = ""
    provider: str = ""
    rest: str = ""  # path after the provider slug, without leading '/'


HEALTH = Route("health")


def match(path: str) -> Route | None:
    """Map a request path to a Route, or None when nothing lives there."""
    if path == "/healthz":
        return HEALTH
    if not path.startswith("/v1/"):
        return None
    parts = path[4:].split("/", 3)
    if len(parts) < 2 or not ID_PATTERN.fullmatch(parts[0]) or not ID_PATTERN.fullmatch(parts[1]):
        return None
    account_id, gateway_id = parts[0], parts[1]
    if len(parts) == 2 or (len(parts) == 3 and parts[2] == ""):
        return Route("universal", account_id, gateway_id)
    return Route("provider", account_id, gateway_id, parts[2], parts[3] if len(parts) > 3 else "")
