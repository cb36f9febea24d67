"""OpenAI-compatible providers: the body goes through with only `model` rewritten."""

from __future__ import annotations

import re
from typing import Any

import orjson

_MODEL_KEY = re.compile(rb'"model"\s*:\s*')


def rewrite_model(body: bytes, chat: dict[str, Any], model: str) -> bytes:
    """`body` with its top-level `model` replaced and every other byte unchanged.

    `chat` is `body` decoded (the caller read `model` from it). When the raw
    bytes hold exactly one `"model":` key (inside a JSON string the quotes
    would be escaped), that key is the top-level one and its value is spliced
    in place. Otherwise (nested `model` keys) the body is re-encoded.
    """
    keys = list(_MODEL_KEY.finditer(body))
    if len(keys) == 1:
        start = keys[0].end()
        old = orjson.dumps(chat.get("model"))
        if body.startswith(old, start):
            return body[:start] + orjson.dumps(model) + body[start + len(old) :]
    return orjson.dumps({**chat, "model": model})
