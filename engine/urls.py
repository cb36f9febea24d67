"""Upstream URLs: parsing configured base URLs and joining step endpoints safely.

The gateway only ever connects to the origin of a provider's configured base
URL. A step's `endpoint` is a path below that base: it can never name another
host or climb above the base path (no SSRF, no `..`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from engine.errors import bad_request

DEFAULT_PORTS = {"http": 80, "https": 443}
# Path characters we refuse outright: whitespace, control characters, backslash, fragment.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\#]")
_ACCOUNT_PLACEHOLDER = "{account_id}"


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        if self.port == DEFAULT_PORTS[self.scheme]:
            return self.host
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BaseURL:
    origin: Origin
    path: str  # no trailing slash; may hold the {account_id} placeholder

    def __str__(self) -> str:
        return f"{self.origin.scheme}://{self.origin.host_header}{self.path}"


def parse_base_url(url: str) -> BaseURL:
    """Parse a configured base URL; ValueError says what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"has no host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials")
    if parts.query or parts.fragment:
        raise ValueError("must not contain a query string or fragment")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError(f"has a bad port: {url!r}") from None
    path = parts.path.rstrip("/")
    if _FORBIDDEN.search(path.replace(_ACCOUNT_PLACEHOLDER, "")):
        raise ValueError(f"has characters not allowed in a path: {url!r}")
    return BaseURL(Origin(parts.scheme, parts.hostname, port), path)


def check_endpoint(endpoint: str) -> tuple[str, str]:
    """Split a step endpoint into (path, query) after refusing anything unsafe."""
    path, _, query = endpoint.partition("?")
    path = path.lstrip("/") if not path.startswith("//") else path
    if path.startswith("//") or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path):
        raise bad_request(f"endpoint must be a path below the provider, got {endpoint!r}")
    if _FORBIDDEN.search(path) or _FORBIDDEN.search(query):
        raise bad_request("endpoint contains characters that are not allowed")
    # Decode once so %2e%2e and %2F tricks are caught too.
    segments = unquote(path).replace("\\", "/").split("/")
    if any(seg in ("..", ".") for seg in segments):
        raise bad_request("endpoint must not contain '.' or '..' segments")
    return path, query


def upstream_target(base: BaseURL, path: str, query: str, account_id: str) -> bytes:
    """The request-target sent upstream: base path + endpoint path (+ query)."""
    base_path = base.path.replace(_ACCOUNT_PLACEHOLDER, account_id)
    # `/openai/v1/chat/completions` against a base ending in /v1 is the
    # classic double-/v1 mistake; drop the duplicate rather than answer 404.
    if base_path.endswith("/v1") and (path == "v1" or path.startswith("v1/")):
        path = path[3:]
    target = f"{base_path}/{path}" if path else base_path or "/"
    if query:
        target = f"{target}?{query}"
    if target.isascii():
        return target.encode("ascii")
    return quote(target, safe="/?&=%@:+,;!$'()*~-._").encode("ascii")
