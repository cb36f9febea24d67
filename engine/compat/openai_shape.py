"""OpenAI chat-completion objects: what every translated answer becomes.

Shapes follow OpenAI's API reference (`chat.completion`, `chat.completion.chunk`,
the `usage` block, the `{"error": ...}` body); the tests validate them with the
`openai` SDK's own types.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from engine.compat.chat import Image, Message, Text, Tool
from engine.ids import uuid7

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class Usage:
    """Token counts in OpenAI's terms; also what the request log records.

    `prompt_tokens` includes cached and cache-written tokens (OpenAI counts them
    as prompt tokens); `cached_tokens` and `cache_write_tokens` are parts of it.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_openai(self) -> dict[str, Any]:
        details: dict[str, int] = {"cached_tokens": self.cached_tokens}
        if self.cache_write_tokens:
            details["cache_write_tokens"] = self.cache_write_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": details,
        }
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage


def count(value: Any) -> int:
    """A token count from a provider body: a non-negative int, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value)


def completion_id(upstream_id: Any = None) -> str:
    """`chatcmpl-` plus the provider's response id when it sent one, for tracing."""
    if isinstance(upstream_id, str) and upstream_id:
        return f"chatcmpl-{upstream_id}"
    return "chatcmpl-" + uuid7().replace("-", "")


def now() -> int:
    return int(time.time())


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def function_tool(tool: Tool) -> dict[str, Any]:
    """A tool declared OpenAI's way, which Cohere and Workers AI also take."""
    function = {
        "name": tool.name,
        "description": tool.description or "",
        "parameters": tool.parameters,
    }
    return {"type": "function", "function": function}


def content(message: Message) -> str | list[dict[str, Any]]:
    """OpenAI-style message content: a string for text alone, else text and image_url parts."""
    if not any(isinstance(part, Image) for part in message.parts):
        return message.text
    return [
        {"type": "text", "text": part.text}
        if isinstance(part, Text)
        else {"type": "image_url", "image_url": {"url": part.url}}
        for part in message.parts
    ]


def choice(
    index: int, content: str | None, tool_calls: list[dict[str, Any]], finish_reason: str
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}


def completion(id_: str, model: str, choices: list[dict[str, Any]], usage: Usage | None) -> bytes:
    body: dict[str, Any] = {
        "id": id_,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage.as_openai()
    return orjson.dumps(body)


def chunk(
    id_: str,
    created: int,
    model: str,
    choices: list[dict[str, Any]],
    usage: Usage | None = None,
) -> bytes:
    """One `chat.completion.chunk`, framed as an SSE event."""
    body: dict[str, Any] = {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage.as_openai()
    return b"data: " + orjson.dumps(body) + b"\n\n"


def error_object(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_event(message: str, type_: str, code: str | None = None) -> bytes:
    """A provider error inside a stream, framed like `engine.sse.error_event`.

    `event: error` plus a data object with an `error` member: the OpenAI SDK
    raises on the member, the Anthropic SDK on the event name.
    """
    payload = {"type": "error", **error_object(message, type_, None, code)}
    return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"
