"""Cohere v2 chat (`v2/chat`).

Cohere's v2 messages are close to OpenAI's (system/user/assistant/tool roles,
`tool_calls`, `tool_call_id`, `image_url` parts, function tools), so little
changes shape. Choices:
- `top_p` is Cohere's `p`; `stop` its `stop_sequences`.
- Cohere's `tool_choice` knows only REQUIRED and NONE: a named choice becomes
  REQUIRED with only that tool offered; auto is Cohere's default and not sent.
- json_object and json_schema both become `response_format` type json_object,
  with the schema as `json_schema` when there is one.
- Usage comes from `usage.tokens` (what the model processed), else
  `usage.billed_units`; `usage.cached_tokens` is a part of the input.
- `n` above 1 is refused. The tool plan (Cohere's note on why it calls tools)
  is not returned: chat completions have no place for it.
"""

from __future__ import annotations

from typing import Any

import orjson

from engine.compat.base import UpstreamCall, translating, upstream_call
from engine.compat.chat import Chat, Message, parse_chat
from engine.compat.errors import error_fields, error_type, translate_error
from engine.compat.openai_shape import (
    Usage,
    choice,
    completion,
    completion_id,
    content,
    count,
    function_tool,
    tool_call,
)
from engine.compat.streaming import SSEStream
from engine.sse import Event

FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}


def request(chat: dict[str, Any], model: str) -> UpstreamCall:
    parsed = parse_chat(chat)
    return upstream_call("v2/chat", body(parsed, model), parsed)


def body(chat: Chat, model: str) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "messages": [_message(m) for m in chat.messages]}
    tools = chat.tools
    if chat.tool_choice == "function":
        tools = tuple(tool for tool in tools if tool.name == chat.tool_name)
    if tools:
        out["tools"] = [function_tool(tool) for tool in tools]
        if chat.tool_choice in ("required", "function"):
            out["tool_choice"] = "REQUIRED"
        elif chat.tool_choice == "none":
            out["tool_choice"] = "NONE"
    for field, name in (
        ("max_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "p"),
        ("seed", "seed"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
    ):
        if (value := getattr(chat, field)) is not None:
            out[name] = value
    if chat.stop:
        out["stop_sequences"] = list(chat.stop)
    if chat.response_format:
        response_format: dict[str, Any] = {"type": "json_object"}
        if chat.response_format.schema is not None:
            response_format["json_schema"] = chat.response_format.schema
        out["response_format"] = response_format
    if chat.stream:
        out["stream"] = True
    return out


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text}
    out: dict[str, Any] = {"role": message.role}
    if (text_or_parts := content(message)) or not message.tool_calls:
        out["content"] = text_or_parts
    if message.tool_calls:
        out["tool_calls"] = [tool_call(c.id, c.name, c.arguments) for c in message.tool_calls]
    return out


def usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    tokens = data.get("tokens") or data.get("billed_units") or {}
    return Usage(
        prompt_tokens=count(tokens.get("input_tokens")),
        completion_tokens=count(tokens.get("output_tokens")),
        cached_tokens=count(data.get("cached_tokens")),
    )


def response(body_: bytes, model: str) -> bytes:
    with translating():
        data = orjson.loads(body_)
        message = data.get("message") or {}
        texts = [c.get("text", "") for c in message.get("content") or [] if c.get("type") == "text"]
        calls = [
            tool_call(
                call.get("id", ""),
                (call.get("function") or {}).get("name", ""),
                (call.get("function") or {}).get("arguments") or "{}",
            )
            for call in message.get("tool_calls") or []
        ]
        reason = FINISH_REASONS.get(data.get("finish_reason"), "stop")
        choices = [choice(0, "".join(texts) if texts else None, calls, reason)]
        return completion(completion_id(data.get("id")), model, choices, usage(data.get("usage")))


class CohereStream(SSEStream):
    """message-start, content-delta, tool-call-start/delta/end, message-end."""

    def on_event(self, event: Event) -> None:
        if event.data == "[DONE]":
            return
        data = self.json(event)
        if data is None:
            return
        kind = data.get("type") or event.event
        message = (data.get("delta") or {}).get("message") or {}
        if kind == "message-start":
            if not self.started:
                self.id = completion_id(data.get("id"))
            self.start()
        elif kind == "content-delta":
            self.text((message.get("content") or {}).get("text") or "")
        elif kind == "tool-call-start":
            call = message.get("tool_calls") or {}
            function = call.get("function") or {}
            key = data.get("index")
            arguments = function.get("arguments") or ""
            self.tool_start(key, call.get("id", ""), function.get("name", ""), arguments)
        elif kind == "tool-call-delta":
            function = (message.get("tool_calls") or {}).get("function") or {}
            self.tool_arguments(data.get("index"), function.get("arguments") or "")
        elif kind == "message-end":
            delta = data.get("delta") or {}
            self.usage = usage(delta.get("usage")) or self.usage
            reason = delta.get("finish_reason")
            if reason == "ERROR" or delta.get("error"):
                message_ = delta.get("error") or "The provider stopped with an error"
                self.fail(message_, error_type(500), reason)
                return
            self.end(FINISH_REASONS.get(reason, "stop"))
            self.close()
        elif kind == "error" or data.get("error"):
            text, type_, code, _ = error_fields(data)
            self.fail(text or "The provider reported an error", type_ or error_type(500), code)


stream = CohereStream
error = translate_error  # one reader serves every family's error bodies
