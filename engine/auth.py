"""Authenticated gateways: the gateway token check."""

from __future__ import annotations

import hmac

from engine.config import GatewaySettings
from engine.errors import UNAUTHORIZED, GatewayError
from engine.plan import cf_headers
from engine.steps import Step, parse_body

AUTH_SUBPROTOCOL = "cf-aig-authorization."  # browsers send the token as a WebSocket subprotocol


def authorize(gateway: GatewaySettings, credential: str | None) -> None:
    """Raise 401 / 2009 unless `credential` carries the gateway's token.

    Both `Bearer {token}` and the bare token are accepted, as the docs show
    both; the comparison takes constant time.
    """
    if gateway.token is None:
        return
    presented = (credential or "").strip()
    if presented[:7].lower() == "bearer ":
        presented = presented[7:].strip()
    if not hmac.compare_digest(presented.encode(), gateway.token.encode()):
        raise GatewayError(401, UNAUTHORIZED)


def parse_authorized(body: bytes, gateway: GatewaySettings, credential: str | None) -> list[Step]:
    """Parse Universal steps, checking the token in them when the request carried none.

    A request-level `cf-aig-authorization` (`credential`) is checked by the caller first.
    """
    if credential is not None or gateway.token is None:
        return parse_body(body)
    try:
        steps = parse_body(body)
    except GatewayError:
        raise GatewayError(401, UNAUTHORIZED) from None  # say nothing more to a stranger
    in_steps = (cf_headers(step.headers).get("cf-aig-authorization") for step in steps)
    authorize(gateway, next((c for c in in_steps if c is not None), None))
    return steps
