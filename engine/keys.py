"""Stored provider keys (BYOK): which credential a planned upstream call carries.

Precedence, as Cloudflare documents it:
1. A key the request brings in its provider's own slot is forwarded as is.
   A gateway token in a key slot is not a provider key: it authenticated the
   request (`engine.auth`) and is dropped here, never forwarded.
2. Otherwise the stored key under the alias `cf-aig-byok-alias` names
   (400 / 2040 when the provider has no key of that name), else `default`.
3. Otherwise nothing is added, unless the gateway is `byok_only`: then the
   request is refused with 400 / 2042 before anything goes upstream.

The stored key goes into the provider's own header (`Auth.inject`), or, for
structured keys, through the provider's signer (`Auth.sign`): `apply_key` is
the one place a key meets a request.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.config import GatewaySettings
from engine.errors import GatewayError
from engine.provider import ProviderSpec
from engine.secrets import Secret
from engine.urls import Origin

UNKNOWN_ALIAS = 2040
CREDENTIALS_REQUIRED = 2042  # ours: Cloudflare documents a 400 without a code
_SLOTS = frozenset({b"authorization", b"x-api-key", b"x-goog-api-key"})

Headers = list[tuple[bytes, bytes]]


def settle_credentials(
    headers: Headers,
    spec: ProviderSpec,
    gateway: GatewaySettings,
    alias: str | None,
    request: Request,
) -> Headers:
    """The headers to send upstream, with the provider credential decided.

    Args:
        headers: the forwarded request headers (lower-case names).
        alias: `cf-aig-byok-alias`, the step's over the request's.
        request: (method, origin, target, body), for providers that sign.

    Raises:
        GatewayError: 400 / 2040 for an unknown alias, 400 / 2042 when the
            gateway is `byok_only` and no credential is at hand.
    """
    tokens = gateway.tokens
    if not tokens and not gateway.byok_only and alias is None:
        return headers  # no keys (they need a token), nothing asked for: the plain path
    auth = spec.auth
    own_slots = {auth.header.encode(), *(name.encode() for name in auth.also)}
    slots = _SLOTS | own_slots
    kept: Headers = []
    own = auth.query is not None and _in_query(request[2], auth.query)
    for name, value in headers:
        if name in slots:
            if tokens and tokens.match(value.decode("latin-1")):
                continue  # the gateway token, given in a key slot
            own = own or (name in own_slots and _has_value(value, spec))
        kept.append((name, value))
    if own:
        return kept
    secret = choose_key(spec.slug, gateway.keys.get(spec.slug), alias)
    if secret is None:
        if gateway.byok_only:
            raise GatewayError(400, CREDENTIALS_REQUIRED, "Provider credentials required")
        return kept
    return apply_key(spec, secret, kept, request)


def choose_key(
    provider: str, aliases: Mapping[str, Secret] | None, alias: str | None
) -> Secret | None:
    """The stored key for `alias` (400 / 2040 if there is none), or `default`."""
    if alias is None:
        return aliases.get("default") if aliases else None
    if aliases and alias in aliases:
        return aliases[alias]
    configured = ", ".join(f"'{name}'" for name in aliases or ()) or "none"
    raise GatewayError(
        400,
        UNKNOWN_ALIAS,
        f"Provider '{provider}' has no BYOK credential named '{alias[:64]}'. "
        f"Configured aliases: {configured}",
    )


Request = tuple[bytes, Origin, bytes, bytes]  # method, origin, target, body


def apply_key(spec: ProviderSpec, secret: Secret, headers: Headers, request: Request) -> Headers:
    """`headers` carrying the stored key, in the provider's own way."""
    value = secret.reveal()
    if spec.auth.sign is not None and not isinstance(value, str):
        method, origin, target, body = request
        return spec.auth.sign(value, method, origin.host_header, target, headers, body)
    if not isinstance(value, str):
        raise GatewayError(
            500, 2005, f"The stored key for '{spec.slug}' is a table, which it cannot use"
        )
    name, injected = spec.auth.inject(value)
    return [*(h for h in headers if h[0] != name), (name, injected)]


def _has_value(value: bytes, spec: ProviderSpec) -> bool:
    """A key slot that holds more than an empty `Bearer ` prefix."""
    stripped = value.strip()
    return bool(stripped) and stripped.lower() not in (b"bearer", spec.auth.prefix.strip().encode())


def _in_query(target: bytes, name: str) -> bool:
    query = target.partition(b"?")[2]
    needle = name.encode() + b"="
    return any(part.startswith(needle) and len(part) > len(needle) for part in query.split(b"&"))
