"""Workers AI's native run API (`run/@cf/...`).

Workers AI takes OpenAI-style `messages` and function `tools`, so the body
changes little. Choices:
- Message content stays a string when it is text only (older models accept
  nothing else); with images it is an OpenAI-style parts array, which the
  vision models take.
- `response_format` json_schema becomes Workers AI's JSON mode, whose
  `json_schema` is the schema itself; the answer's `response` then arrives as
  an object and goes back to the client as JSON text.
- tool_choice, stop and user have no place in the run API's schema and are
  dropped; `n` above 1 is refused.
- Finish reasons are not reported: tool calls give `tool_calls`, else `stop`.
Newer models answer in chat-completion shape inside `result` (`choices`); both
shapes are read.
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
from engine.sse import Event, is_error_event

FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")


def request(chat: dict[str, Any], model: str) -> UpstreamCall:
    parsed = parse_chat(chat)
    path = model if model.startswith("run/") else f"run/{model}"
    return upstream_call(path, body(parsed), parsed)


def body(chat: Chat) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": [_message(m) for m in chat.messages]}
    if chat.tools and chat.tool_choice != "none":
        out["tools"] = [function_tool(tool) for tool in chat.tools]
    for name in (
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "presence_penalty",
        "frequency_penalty",
    ):
        if (value := getattr(chat, name)) is not None:
            out[name] = value
    if chat.response_format:
        response_format: dict[str, Any] = {"type": chat.response_format.type}
        if chat.response_format.schema is not None:
            response_format["json_schema"] = chat.response_format.schema
        out["response_format"] = response_format
    if chat.stream:
        out["stream"] = True
    return out


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": content(message)}
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [tool_call(c.id, c.name, c.arguments) for c in message.tool_calls]
    return out


def usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    details = data.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=count(data.get("prompt_tokens")),
        completion_tokens=count(data.get("completion_tokens")),
        cached_tokens=count(details.get("cached_tokens")),
    )


def _tool_calls(raw: Any, prefix: str, start: int = 0) -> list[dict[str, Any]]:
    """Both shapes Workers AI returns: `{name, arguments: object}` and OpenAI's.

    Calls without an id get `call_{prefix}_{n}`, n counting from `start`.
    """
    calls = []
    for n, call in enumerate(raw if isinstance(raw, list) else [], start):
        function = call.get("function")
        if isinstance(function, dict):
            name, arguments = function.get("name", ""), function.get("arguments", "")
        else:
            name, arguments = call.get("name", ""), call.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()
        calls.append(tool_call(call.get("id") or f"call_{prefix}_{n}", name, arguments))
    return calls


def _text(value: Any) -> str:
    """`response` is text, or (JSON mode) the parsed object itself."""
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def response(body_: bytes, model: str) -> bytes:
    with translating():
        data = orjson.loads(body_)
        result = data.get("result", data) if isinstance(data, dict) else None
        if not isinstance(result, dict):
            raise ValueError("no result")
        id_ = completion_id(result.get("id"))
        if isinstance(result.get("choices"), list):  # chat-completion shape already
            choices = []
            for n, item in enumerate(result["choices"]):
                message = item.get("message") or {}
                calls = _tool_calls(message.get("tool_calls"), id_.removeprefix("chatcmpl-"))
                reason = item.get("finish_reason")
                reason = reason if reason in FINISH_REASONS else "tool_calls" if calls else "stop"
                choices.append(choice(item.get("index", n), message.get("content"), calls, reason))
        else:
            calls = _tool_calls(result.get("tool_calls"), id_.removeprefix("chatcmpl-"))
            text = _text(result.get("response"))
            reason = "tool_calls" if calls else "stop"
            choices = [choice(0, text if text or not calls else None, calls, reason)]
        upstream_model = result.get("model") or model
        return completion(id_, upstream_model, choices, usage(result.get("usage")))


class WorkersAIStream(SSEStream):
    """`data: {"response": "tok"}` ... a last event with `usage` ... `data: [DONE]`."""

    def on_event(self, event: Event) -> None:
        if event.data == "[DONE]":
            self.end("tool_calls" if self.tool_count() else "stop")
            self.close()
            return
        if is_error_event(event):
            message, type_, code, _ = error_fields(orjson.loads(event.data or b"{}"))
            self.fail(message or "The provider reported an error", type_ or error_type(500), code)
            return
        data = self.json(event)
        if data is None:
            return
        self.usage = usage(data.get("usage")) or self.usage
        if isinstance(data.get("choices"), list):
            for item in data["choices"]:
                self._delta(item.get("delta") or {})
                if item.get("finish_reason") in FINISH_REASONS:
                    self.end(item["finish_reason"])
            return
        self.start()
        self.text(_text(data.get("response")))
        prefix = self.id.removeprefix("chatcmpl-")
        for call in _tool_calls(data.get("tool_calls"), prefix, self.tool_count()):
            function = call["function"]
            self.tool_start(call["id"], call["id"], function["name"], function["arguments"])

    def _delta(self, delta: dict[str, Any]) -> None:
        """An OpenAI-shaped delta, from the models that stream chat-completion chunks."""
        self.start()
        self.text(delta.get("content") or "")
        for call in delta.get("tool_calls") or []:
            key = call.get("index", 0)
            function = call.get("function") or {}
            if call.get("id"):
                arguments = function.get("arguments") or ""
                self.tool_start(key, call["id"], function.get("name", ""), arguments)
            else:
                self.tool_arguments(key, function.get("arguments") or "")


stream = WorkersAIStream
error = translate_error  # one reader serves every family's error bodies
