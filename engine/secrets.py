"""Gateway tokens and stored provider keys as configuration holds them.

Both come from `gateway.toml`, written inline or as `{ env = "VAR" }` so the
file itself need hold no secret. They are resolved once, at start-up: a
missing variable stops the gateway with a message naming the key and the
variable, never the value.

Rules:
1. A token is kept only as its SHA-256 digest. Checking compares digests in
   constant time against every configured token, so neither the token's
   length nor which of several tokens matched shows in the timing.
2. A stored key is a `Secret`: its repr and str never show the value, so a
   settings object that ends up in a log line or an error message cannot
   leak it. Only `reveal()` hands the value to the code that injects it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError


class Secret:
    """A credential value that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str | Mapping[str, str]) -> None:
        self._value = value

    def reveal(self) -> str | Mapping[str, str]:
        """The value: a string, or the fields of a structured key (AWS credentials)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class Tokens:
    """The tokens an authenticated gateway accepts (several while one is rotated)."""

    digests: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, *tokens: str) -> Tokens:
        return cls(tuple(_digest(token) for token in tokens))

    def __bool__(self) -> bool:
        return bool(self.digests)

    def __repr__(self) -> str:
        return f"Tokens({len(self.digests)})"

    def match(self, presented: str | None) -> bool:
        """Whether `presented` (a bare token or `Bearer {token}`) is one of the tokens."""
        if not presented:
            return False
        presented = presented.strip()
        if presented[:7].lower() == "bearer ":
            presented = presented[7:].strip()
        digest = _digest(presented)
        found = False
        for known in self.digests:  # no early exit: every token costs the same
            found |= hmac.compare_digest(digest, known)
        return found


NO_TOKENS = Tokens()


def source(value: Any, key: str, environ: Mapping[str, str]) -> str:
    """A string written inline or as `{ env = "VAR" }`, resolved now."""
    if isinstance(value, str):
        if not value:
            raise ConfigError(f"{key}: must not be empty")
        return value
    if isinstance(value, Mapping) and set(value) == {"env"}:
        name = value["env"]
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key}.env: expected the name of an environment variable")
        resolved = environ.get(name)
        if not resolved:
            raise ConfigError(f"{key}: environment variable {name} is not set or empty")
        return resolved
    raise ConfigError(f'{key}: expected a string or {{ env = "VAR" }}')


def tokens(table: Mapping[str, Any], key: str, environ: Mapping[str, str]) -> Tokens:
    """`token = ...` and `tokens = [...]` of one gateway, together."""
    found: list[str] = []
    if "token" in table:
        found.append(source(table["token"], f"{key}.token", environ))
    if "tokens" in table:
        listed = table["tokens"]
        if not isinstance(listed, list) or not listed:
            raise ConfigError(f"{key}.tokens: expected a non-empty array of tokens")
        found += [source(v, f"{key}.tokens[{i}]", environ) for i, v in enumerate(listed)]
    return Tokens.of(*found)


def stored_key(value: Any, key: str, environ: Mapping[str, str]) -> Secret:
    """One alias's key: a string, `{ env = "VAR" }`, or a table of such fields.

    A table with fields other than `env` is a structured key (Bedrock's
    `accessKeyId`, `secretAccessKey`, `region`), signed by its provider.
    """
    if isinstance(value, Mapping) and set(value) != {"env"}:
        if not value:
            raise ConfigError(f"{key}: an empty table is not a key")
        return Secret({name: source(v, f"{key}.{name}", environ) for name, v in value.items()})
    return Secret(source(value, key, environ))


def stored_keys(
    table: Any, key: str, environ: Mapping[str, str], is_provider: Callable[[str], bool]
) -> Mapping[str, Mapping[str, Secret]]:
    """`[gateways.ID.keys.PROVIDER]` tables: provider -> alias -> key."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{key}: expected a table of providers")
    keys: dict[str, Mapping[str, Secret]] = {}
    for provider, aliases in table.items():
        where = f"{key}.{provider}"
        if not is_provider(provider):
            raise ConfigError(f"{where}: unknown provider")
        if not isinstance(aliases, Mapping) or not aliases:
            raise ConfigError(f'{where}: expected a table of aliases, e.g. default = "..."')
        keys[provider] = {
            alias: stored_key(value, f"{where}.{alias}", environ)
            for alias, value in aliases.items()
        }
    return keys
