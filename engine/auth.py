"""Authenticated gateways: the gateway token check, the one place it happens.

Every surface (Universal over HTTP and WebSocket, provider paths, compat, run,
realtime) calls `authorize` or `parse_authorized`; nothing else compares tokens.

Where the token may be:
1. `cf-aig-authorization: Bearer {token}` (or the bare token) on the request,
   or on the WebSocket handshake (also as the subprotocol
   `cf-aig-authorization.{token}`). When present, it alone decides.
2. Without it, in a Universal step's own `cf-aig-authorization` header.
3. Without either, in a provider key slot (`Authorization`, `x-api-key`,
   `x-goog-api-key`): Cloudflare's SDK examples for stored keys pass the
   gateway token as the SDK's API key. A token found there authenticates the
   request and is never forwarded; the stored key is sent instead
   (`engine.keys`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.config import GatewaySettings
from engine.errors import UNAUTHORIZED, GatewayError
from engine.plan import cf_headers
from engine.steps import MAX_STEPS, Step, parse_body

AUTH_SUBPROTOCOL = "cf-aig-authorization."  # browsers send the token as a WebSocket subprotocol
# Provider key slots a client may put the gateway token in (lower-case header names).
TOKEN_SLOTS = ("authorization", "x-api-key", "x-goog-api-key")


def authorize(gateway: GatewaySettings, credential: str | None, *slots: str | None) -> None:
    """Raise 401 / 2009 unless the request carries one of the gateway's tokens.

    Args:
        credential: the request's `cf-aig-authorization`, None when absent.
        slots: values of the request's provider key slots (`slot_values`),
            tried only when `credential` is absent.
    """
    tokens = gateway.tokens
    if not tokens:
        return
    if credential is not None:
        if tokens.match(credential):
            return
    elif any(tokens.match(value) for value in slots):
        return
    raise GatewayError(401, UNAUTHORIZED)


def slot_values(headers: Mapping[str, str]) -> list[str]:
    """The provider key slot values of a header mapping (names in any case)."""
    return [value for name, value in headers.items() if name.lower() in TOKEN_SLOTS]


def raw_slot_values(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The same, from a listener's raw header pairs."""
    return [
        value.decode("latin-1")
        for name, value in headers
        if name.lower() in (b"authorization", b"x-api-key", b"x-goog-api-key")
    ]


def parse_authorized(
    body: bytes, gateway: GatewaySettings, credential: str | None, max_steps: int = MAX_STEPS
) -> list[Step]:
    """Parse Universal steps, checking the token in them when the request carried none.

    A request-level `cf-aig-authorization` (`credential`) is checked by the caller first.
    """
    if credential is not None or not gateway.tokens:
        return parse_body(body, max_steps)
    try:
        steps = parse_body(body, max_steps)
    except GatewayError:
        raise GatewayError(401, UNAUTHORIZED) from None  # say nothing more to a stranger
    in_steps = (cf_headers(step.headers).get("cf-aig-authorization") for step in steps)
    found = next((c for c in in_steps if c is not None), None)
    if found is not None:
        authorize(gateway, found)
    else:
        authorize(gateway, None, *(v for step in steps for v in slot_values(step.headers)))
    return steps
