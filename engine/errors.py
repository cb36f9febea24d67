"""The one gateway exception and the Cloudflare error envelope it renders to."""

from __future__ import annotations

import orjson

# Cloudflare's documented codes and the messages clients match on.
GATEWAY_NOT_FOUND = 2001
RATE_LIMITED = 2003
PROVIDER_FAILED = 2005
INVALID_PROVIDER = 2008
UNAUTHORIZED = 2009
BAD_REQUEST = 2019  # "bad format": the closest documented code for malformed input

MESSAGES = {
    GATEWAY_NOT_FOUND: "Please configure AI Gateway in the Cloudflare dashboard",
    RATE_LIMITED: "Rate limited",
    PROVIDER_FAILED: "Failed to get response from provider",
    INVALID_PROVIDER: "Invalid provider",
    UNAUTHORIZED: "Unauthorized",
}


class GatewayError(Exception):
    """An error the gateway itself answers with, as Cloudflare's error envelope.

    Provider errors are never raised as this: their responses pass through.
    """

    # Extra response headers the error is sent with (a 429's Retry-After).
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def __init__(self, status: int, code: int, message: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message or MESSAGES.get(code, "Bad request")
        super().__init__(f"{code}: {self.message}")

    def envelope(self) -> dict[str, object]:
        return {
            "success": False,
            "result": [],
            "messages": [],
            "error": [{"code": self.code, "message": self.message}],
            "name": "AiGatewayError",
            "httpCode": self.status,
            "internalCode": self.code,
            "message": self.message,
            "description": self.message,
        }

    def body(self) -> bytes:
        return orjson.dumps(self.envelope())


class ConfigError(ValueError):
    """A bad configuration value, found at start-up; the message names the key."""


def bad_request(message: str) -> GatewayError:
    return GatewayError(400, BAD_REQUEST, message)
