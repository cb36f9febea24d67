"""Bedrock Converse (`model/{modelId}/converse` and `converse-stream`).

Request choices:
- Converse wants strict user/assistant alternation, so consecutive turns of one
  role merge (a run of tool results becomes one user turn of `toolResult`s).
- Images must be bytes: data: URLs become `image.source.bytes`; http(s) URLs are
  refused, since the gateway does not fetch URLs on a client's behalf.
- tool_choice none has no Converse equivalent: tools are left out, unless the
  conversation already holds tool calls (Converse then requires `toolConfig`),
  in which case the model may still call one.
- `response_format` json_schema becomes `outputConfig.textFormat` (structured
  output; the schema travels as a JSON string). json_object is not honoured.
- `n` above 1 is refused; seed and penalties are dropped.
The stream is AWS's binary event stream (see `eventstream.py`), one JSON event
per message, named by its `:event-type` header.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from engine.compat.base import SHAPE_ERRORS, UpstreamCall, translating, upstream_call
from engine.compat.chat import Chat, Image, Message, Text, bad_format, parse_chat
from engine.compat.errors import error_type, translate_error
from engine.compat.eventstream import Decoder, EventStreamError
from engine.compat.eventstream import Message as Frame
from engine.compat.openai_shape import Usage, choice, completion, completion_id, count, tool_call
from engine.compat.streaming import ChunkStream

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg"}
IMAGE_FORMATS |= {"image/gif": "gif", "image/webp": "webp"}
EXCEPTION_TYPES = {
    "throttlingException": "rate_limit_error",
    "validationException": "invalid_request_error",
    "accessDeniedException": "permission_error",
}


def request(chat: dict[str, Any], model: str) -> UpstreamCall:
    parsed = parse_chat(chat)
    operation = "converse-stream" if parsed.stream else "converse"
    path = f"model/{quote(model, safe='')}/{operation}"
    return upstream_call(path, body(parsed), parsed)


def body(chat: Chat) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": _messages(chat)}
    if chat.system:
        out["system"] = [{"text": text} for text in chat.system]
    inference: dict[str, Any] = {}
    for field, name in (("max_tokens", "maxTokens"), ("temperature", "temperature")):
        if (value := getattr(chat, field)) is not None:
            inference[name] = value
    if chat.top_p is not None:
        inference["topP"] = chat.top_p
    if chat.stop:
        inference["stopSequences"] = list(chat.stop)
    if inference:
        out["inferenceConfig"] = inference
    has_tool_blocks = any(m.tool_calls or m.role == "tool" for m in chat.turns)
    if chat.tools and (chat.tool_choice != "none" or has_tool_blocks):
        out["toolConfig"] = _tool_config(chat)
    if chat.response_format and chat.response_format.schema is not None:
        schema: dict[str, Any] = {"schema": orjson.dumps(chat.response_format.schema).decode()}
        if chat.response_format.name:
            schema["name"] = chat.response_format.name
        structure = {"jsonSchema": schema}
        out["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": structure}}
    return out


def _tool_config(chat: Chat) -> dict[str, Any]:
    tools = []
    for tool in chat.tools:
        spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": tool.parameters}}
        if tool.description:
            spec["description"] = tool.description
        if tool.strict:
            spec["strict"] = True
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    if chat.tool_choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif chat.tool_choice == "required":
        config["toolChoice"] = {"any": {}}
    elif chat.tool_choice == "function":
        config["toolChoice"] = {"tool": {"name": chat.tool_name}}
    return config


def _messages(chat: Chat) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for position, message in enumerate(chat.messages):
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message, position)
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    return messages


def _blocks(message: Message, position: int) -> list[dict[str, Any]]:
    if message.role == "tool":
        result = {"toolUseId": message.tool_call_id, "content": [{"text": message.text}]}
        return [{"toolResult": result}]
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(message.parts):
        if isinstance(part, Text) and part.text:
            blocks.append({"text": part.text})
        elif isinstance(part, Image):
            blocks.append({"image": _image(part, f"messages[{position}].content[{index}]")})
    for call in message.tool_calls:
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": call.input}})
    return blocks


def _image(image: Image, where: str) -> dict[str, Any]:
    if image.data is None:
        raise bad_format(f"'{where}.image_url.url' must be a data: URL for this provider")
    image_format = IMAGE_FORMATS.get(image.media_type or "")
    if image_format is None:
        raise bad_format(f"'{where}.image_url.url' must be a PNG, JPEG, GIF or WebP image")
    return {"format": image_format, "source": {"bytes": image.data}}


def usage(data: Any) -> Usage | None:
    """inputTokens excludes cache reads and writes, as Anthropic's does; OpenAI's includes them."""
    if not isinstance(data, dict):
        return None
    read, written = (
        count(data.get("cacheReadInputTokens")),
        count(data.get("cacheWriteInputTokens")),
    )
    return Usage(
        prompt_tokens=count(data.get("inputTokens")) + read + written,
        completion_tokens=count(data.get("outputTokens")),
        cached_tokens=read,
        cache_write_tokens=written,
    )


def response(body_: bytes, model: str) -> bytes:
    with translating():
        data = orjson.loads(body_)
        message = (data.get("output") or {}).get("message") or {}
        texts, calls = [], []
        for block in message.get("content") or []:
            if "text" in block:
                texts.append(block["text"])
            elif isinstance(use := block.get("toolUse"), dict):
                arguments = orjson.dumps(use.get("input") or {}).decode()
                calls.append(tool_call(use.get("toolUseId", ""), use.get("name", ""), arguments))
        reason = FINISH_REASONS.get(data.get("stopReason"), "stop")
        choices = [choice(0, "".join(texts) if texts else None, calls, reason)]
        return completion(completion_id(), model, choices, usage(data.get("usage")))


class BedrockStream(ChunkStream):
    """messageStart, contentBlockStart/Delta/Stop, messageStop, metadata; exceptions."""

    def __init__(self, model: str, include_usage: bool) -> None:
        super().__init__(model, include_usage)
        self._decoder = Decoder()

    def feed(self, data: bytes) -> bytes:
        if self.closed:
            return b""
        try:
            for frame in self._decoder.feed(data):
                try:
                    self.on_frame(frame)
                except SHAPE_ERRORS:
                    self.broken("The provider sent an event the gateway cannot read")
                if self.closed:
                    break
        except EventStreamError as exc:
            self.broken(f"The provider's event stream is corrupt: {exc}")
        return self.take()

    def on_frame(self, frame: Frame) -> None:
        kind = frame.headers.get(":message-type")
        if kind == "exception":
            name = str(frame.headers.get(":exception-type", "exception"))
            data = orjson.loads(frame.payload or b"{}")
            message = data.get("message") or data.get("Message") or name
            self.fail(message, EXCEPTION_TYPES.get(name, error_type(500)), name)
            return
        if kind == "error":
            code = str(frame.headers.get(":error-code", "error"))
            message = str(frame.headers.get(":error-message", code))
            self.fail(message, error_type(500), code)
            return
        if kind != "event":
            return
        event = frame.headers.get(":event-type")
        data = orjson.loads(frame.payload or b"{}")
        if event == "messageStart":
            self.start()
        elif event == "contentBlockStart":
            use = (data.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                key = data.get("contentBlockIndex")
                self.tool_start(key, use.get("toolUseId", ""), use.get("name", ""))
        elif event == "contentBlockDelta":
            delta = data.get("delta") or {}
            if "text" in delta:
                self.text(delta["text"])
            elif isinstance(use := delta.get("toolUse"), dict):
                self.tool_arguments(data.get("contentBlockIndex"), use.get("input", ""))
        elif event == "messageStop":
            self.end(FINISH_REASONS.get(data.get("stopReason"), "stop"))
        elif event == "metadata":
            self.usage = usage(data.get("usage")) or self.usage
            if self.finish_reasons:
                self.close()


stream = BedrockStream
error = translate_error  # one reader serves every family's error bodies
