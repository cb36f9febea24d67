"""Anthropic Messages (`v1/messages`), also served by Bedrock's and Azure's Anthropic endpoints.

Request choices:
- `max_tokens` is required by Anthropic; without `max_tokens` or
  `max_completion_tokens` we send 4096, the largest value every Claude model
  accepts (Claude 3 Haiku's ceiling).
- System and developer messages, wherever they stand, become top-level `system`
  blocks in order.
- Consecutive turns of one role merge into one turn, so a run of tool results
  becomes one user turn of `tool_result` blocks (Anthropic wants them together,
  before any text).
- `response_format` json_schema becomes `output_config.format` (structured
  outputs). json_object is not honoured: Anthropic has no schema-free JSON
  mode, and rewriting the prompt would change what the client asked.
- `temperature` and `top_p` pass through when set; models that refuse them
  answer with their own 400, translated like any provider error.
- `n` above 1 is refused; seed and penalties have no Anthropic equivalent and
  are dropped. Thinking blocks are not returned (chat completions have no slot).
"""

from __future__ import annotations

from typing import Any

import orjson

from engine.compat.base import JSON, UpstreamCall, translating, upstream_call
from engine.compat.chat import Chat, Image, Message, Text, Tool, parse_chat
from engine.compat.errors import error_fields, error_type, translate_error
from engine.compat.openai_shape import Usage, choice, completion, completion_id, count, tool_call
from engine.compat.streaming import SSEStream
from engine.sse import Event

DEFAULT_MAX_TOKENS = 4096
HEADERS = (*JSON, (b"anthropic-version", b"2023-06-01"))
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
TOOL_CHOICES = {"auto": "auto", "required": "any", "function": "tool", "none": "none"}


def request(chat: dict[str, Any], model: str) -> UpstreamCall:
    parsed = parse_chat(chat)
    return upstream_call("v1/messages", body(parsed, model), parsed, HEADERS)


def body(chat: Chat, model: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": model,
        "max_tokens": chat.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _turns(chat.turns),
    }
    if chat.system:
        out["system"] = [{"type": "text", "text": text} for text in chat.system]
    if chat.stop:
        out["stop_sequences"] = list(chat.stop)
    for name in ("temperature", "top_p"):
        if (value := getattr(chat, name)) is not None:
            out[name] = value
    if chat.stream:
        out["stream"] = True
    if chat.user:
        out["metadata"] = {"user_id": chat.user}
    if chat.tools:
        out["tools"] = [_tool(tool) for tool in chat.tools]
    if chat.tools and (choice_ := _tool_choice(chat)) is not None:
        out["tool_choice"] = choice_
    if chat.response_format and chat.response_format.type == "json_schema":
        out["output_config"] = {
            "format": {"type": "json_schema", "schema": chat.response_format.schema}
        }
    return out


def _tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description:
        out["description"] = tool.description
    if tool.strict:
        out["strict"] = True
    return out


def _tool_choice(chat: Chat) -> dict[str, Any] | None:
    kind = TOOL_CHOICES.get(chat.tool_choice or "")
    if kind is None and chat.parallel_tool_calls is False:
        kind = "auto"
    if kind is None:
        return None
    choice_: dict[str, Any] = {"type": kind}
    if kind == "tool":
        choice_["name"] = chat.tool_name
    if chat.parallel_tool_calls is False and kind != "none":
        choice_["disable_parallel_tool_use"] = True
    return choice_


def _turns(messages: list[Message]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.text}
        ]
    blocks: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, Text) and part.text:
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, Image):
            blocks.append({"type": "image", "source": _image_source(part)})
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.input})
    return blocks


def _image_source(image: Image) -> dict[str, Any]:
    if image.data is None:
        return {"type": "url", "url": image.url}
    return {"type": "base64", "media_type": image.media_type or "image/png", "data": image.data}


def usage(data: Any, usage_: Usage | None = None) -> Usage:
    """input_tokens leaves out cache reads and writes, which OpenAI counts as prompt tokens.

    Stream events repeat the counts cumulatively; a count sent as null keeps the last one.
    """
    usage_ = usage_ or Usage()
    if not isinstance(data, dict):
        return usage_
    if data.get("input_tokens") is not None:
        if data.get("cache_read_input_tokens") is not None:
            usage_.cached_tokens = count(data["cache_read_input_tokens"])
        if data.get("cache_creation_input_tokens") is not None:
            usage_.cache_write_tokens = count(data["cache_creation_input_tokens"])
        cache = usage_.cached_tokens + usage_.cache_write_tokens
        usage_.prompt_tokens = count(data["input_tokens"]) + cache
    if data.get("output_tokens") is not None:
        usage_.completion_tokens = count(data["output_tokens"])
    return usage_


def response(body_: bytes, model: str) -> bytes:
    with translating():
        data = orjson.loads(body_)
        texts, calls = [], []
        for block in data.get("content") or []:
            if block.get("type") == "text":
                texts.append(block.get("text", ""))
            elif block.get("type") == "tool_use":
                arguments = orjson.dumps(block.get("input") or {}).decode()
                calls.append(tool_call(block.get("id", ""), block.get("name", ""), arguments))
        reason = FINISH_REASONS.get(data.get("stop_reason"), "stop")
        choices = [choice(0, "".join(texts) if texts else None, calls, reason)]
        upstream_model = data.get("model") or model
        return completion(
            completion_id(data.get("id")), upstream_model, choices, usage(data.get("usage"))
        )


class AnthropicStream(SSEStream):
    """message_start, content_block_start/delta/stop, message_delta, message_stop, ping, error."""

    def on_event(self, event: Event) -> None:
        data = self.json(event)
        if data is None:
            return
        kind = data.get("type") or event.event
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = completion_id(message.get("id"))
            self.model = message.get("model") or self.model
            self.usage = usage(message.get("usage"), self.usage)
            self.start()
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                self.tool_start(data.get("index"), block.get("id", ""), block.get("name", ""))
            elif block.get("type") == "text":
                self.text(block.get("text", ""))
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                self.text(delta.get("text", ""))
            elif delta.get("type") == "input_json_delta":
                self.tool_arguments(data.get("index"), delta.get("partial_json", ""))
        elif kind == "message_delta":
            self.usage = usage(data.get("usage"), self.usage)
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                self.end(FINISH_REASONS.get(reason, "stop"))
        elif kind == "message_stop":
            self.end("stop")
            self.close()
        elif kind == "error":
            message, type_, code, _ = error_fields(data)
            self.fail(message or "The provider reported an error", type_ or error_type(500), code)


stream = AnthropicStream
error = translate_error  # one reader serves every family's error bodies
