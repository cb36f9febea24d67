"""Provider error bodies rewritten as OpenAI's `{"error": {...}}`; the status stays the provider's.

One reader serves every family, since their shapes do not collide:
Anthropic `{"type": "error", "error": {"type", "message"}}`,
Google `{"error": {"code", "message", "status"}}` (a one-element array in some streams),
Cloudflare `{"errors": [{"code", "message"}], "success": false}`,
Bedrock `{"message"}` and Cohere `{"id", "message"}`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson

from engine.compat.openai_shape import error_object

# The `type` OpenAI clients switch on, by status, when the provider names none.
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
MAX_MESSAGE = 2000  # characters of a non-JSON body kept as the message


def error_type(status: int) -> str:
    return TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")


def error_fields(data: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, type, code, param) from a decoded provider error, whatever its family."""
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        return None, None, None, None
    error = data.get("error")
    if isinstance(error, dict):
        code = error.get("status") or error.get("code")  # Google: "INVALID_ARGUMENT" over 400
        return (
            _text(error.get("message")),
            _text(error.get("type")),
            _code(code),
            _text(error.get("param")),
        )
    if isinstance(error, str):
        return error, None, None, None
    errors = data.get("errors")
    if isinstance(errors, list) and errors and all(isinstance(e, dict) for e in errors):
        messages = [m for e in errors if (m := _text(e.get("message")))]
        return "; ".join(messages) or None, None, _code(errors[0].get("code")), None
    message = _text(data.get("message")) or _text(data.get("Message"))
    return message, _text(data.get("__type")), None, None


def translate_error(status: int, body: bytes) -> bytes:
    try:
        message, type_, code, param = error_fields(orjson.loads(body))
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        message, type_, code, param = text[:MAX_MESSAGE] or None, None, None, None
    if message is None:
        try:
            message = f"{status} {HTTPStatus(status).phrase}"
        except ValueError:
            message = f"Provider answered with status {status}"
    return orjson.dumps(error_object(message, type_ or error_type(status), param, code))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _code(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    return str(value) if isinstance(value, str | int) else None
