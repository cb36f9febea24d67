"""Google generateContent (AI Studio and Vertex share the body).

Request choices:
- Roles become `user` / `model`; system and developer texts become
  `systemInstruction`; consecutive turns of one role merge (Gemini wants the
  responses to parallel calls in one turn).
- Gemini function calls carry no id (or one only some endpoints send), so the
  gateway gives each call an id derived from the response's `responseId` and
  the call's position; a later `tool` message is matched back to its function
  by looking the id up in the conversation's assistant `tool_calls`. The
  result goes in `functionResponse.response` as the object itself when the
  tool returned a JSON object, else as `{"output": ...}` (Gemini's convention).
- Schemas travel as `parametersJsonSchema` and `responseJsonSchema`, which take
  JSON Schema as OpenAI clients write it; `parameters` / `responseSchema`
  accept only an OpenAPI subset that refuses keywords such as
  `additionalProperties`. json_object becomes `responseMimeType` JSON alone.
- Gemini 3 refuses a function call sent back without the `thoughtSignature` it
  came with. Like Google's own OpenAI-compatible API, the gateway returns it
  in the tool call's `extra_content.google.thought_signature` and puts it back
  on the `functionCall` part; a turn whose first call has none gets Google's
  documented placeholder, `skip_thought_signature_validator`.
- http(s) image URLs become `fileData` parts; data: URLs `inlineData`.
- `n` maps to `candidateCount`; each candidate is one choice.
"""

from __future__ import annotations

import mimetypes
from typing import Any

import orjson

from engine.compat.base import UpstreamCall, translating, upstream_call
from engine.compat.chat import Chat, Image, Message, Text, bad_format, parse_chat
from engine.compat.errors import error_fields, error_type, translate_error
from engine.compat.openai_shape import Usage, choice, completion, completion_id, count, tool_call
from engine.compat.streaming import SSEStream
from engine.sse import Event

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}
MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY", "function": "ANY"}
# Google's value for history whose signatures are lost (see the thought signatures guide).
NO_SIGNATURE = "skip_thought_signature_validator"


def request(chat: dict[str, Any], model: str) -> UpstreamCall:
    parsed = parse_chat(chat, several_choices=True)
    name = model.removeprefix("models/")
    method = "streamGenerateContent?alt=sse" if parsed.stream else "generateContent"
    return upstream_call(f"v1beta/models/{name}:{method}", body(parsed), parsed)


def body(chat: Chat) -> dict[str, Any]:
    out: dict[str, Any] = {"contents": _contents(chat)}
    if chat.system:
        out["systemInstruction"] = {"parts": [{"text": text} for text in chat.system]}
    if chat.tools:
        declarations = []
        for tool in chat.tools:
            declaration = {"name": tool.name, "parametersJsonSchema": tool.parameters}
            if tool.description:
                declaration["description"] = tool.description
            declarations.append(declaration)
        out["tools"] = [{"functionDeclarations": declarations}]
        if chat.tool_choice:
            config: dict[str, Any] = {"mode": MODES[chat.tool_choice]}
            if chat.tool_name:
                config["allowedFunctionNames"] = [chat.tool_name]
            out["toolConfig"] = {"functionCallingConfig": config}
    generation = _generation_config(chat)
    if generation:
        out["generationConfig"] = generation
    return out


def _generation_config(chat: Chat) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for field, name in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("max_tokens", "maxOutputTokens"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if (value := getattr(chat, field)) is not None:
            config[name] = value
    if chat.stop:
        config["stopSequences"] = list(chat.stop)
    if chat.n != 1:
        config["candidateCount"] = chat.n
    if chat.response_format:
        config["responseMimeType"] = "application/json"
        if chat.response_format.schema is not None:
            config["responseJsonSchema"] = chat.response_format.schema
    return config


def _contents(chat: Chat) -> list[dict[str, Any]]:
    names = {call.id: call.name for m in chat.messages for call in m.tool_calls}
    contents: list[dict[str, Any]] = []
    for index, message in enumerate(chat.messages):
        if message.role == "system":
            continue
        role = "model" if message.role == "assistant" else "user"
        parts = _parts(message, names, index)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _parts(message: Message, names: dict[str, str], index: int) -> list[dict[str, Any]]:
    if message.role == "tool":
        name = names.get(message.tool_call_id or "")
        if name is None:
            where = f"messages[{index}].tool_call_id"
            raise bad_format(f"'{where}' matches no tool call of an earlier assistant message")
        try:
            result = orjson.loads(message.text)
        except orjson.JSONDecodeError:
            result = message.text
        response = result if isinstance(result, dict) else {"output": result}
        return [{"functionResponse": {"name": name, "response": response}}]
    parts: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, Text) and part.text:
            parts.append({"text": part.text})
        elif isinstance(part, Image):
            parts.append(_image(part))
    for n, call in enumerate(message.tool_calls):
        part: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.input}}
        if call.signature or n == 0:
            part["thoughtSignature"] = call.signature or NO_SIGNATURE
        parts.append(part)
    return parts


def _image(image: Image) -> dict[str, Any]:
    if image.data is not None:
        return {"inlineData": {"mimeType": image.media_type or "image/png", "data": image.data}}
    file_data = {"fileUri": image.url}
    if media_type := mimetypes.guess_type(image.url.partition("?")[0])[0]:
        file_data["mimeType"] = media_type
    return {"fileData": file_data}


def usage(data: Any) -> Usage | None:
    """promptTokenCount already includes cachedContentTokenCount; thoughts are output."""
    if not isinstance(data, dict):
        return None
    thoughts = count(data.get("thoughtsTokenCount"))
    return Usage(
        prompt_tokens=count(data.get("promptTokenCount"))
        + count(data.get("toolUsePromptTokenCount")),
        completion_tokens=count(data.get("candidatesTokenCount")) + thoughts,
        cached_tokens=count(data.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def call_id(response_id: str, index: int, position: int) -> str:
    """A tool call id for a Gemini call that has none: the same for the same response."""
    return f"call_{response_id}_{index}_{position}"


Call = tuple[str | None, str, str, dict[str, Any] | None]  # id, name, arguments, extra


def _candidate(candidate: dict[str, Any]) -> tuple[str, list[Call]]:
    """The answer text (thought summaries left out) and the function calls of a candidate."""
    texts, calls = [], []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if "text" in part and not part.get("thought"):
            texts.append(part["text"])
        elif isinstance(call := part.get("functionCall"), dict):
            arguments = orjson.dumps(call.get("args") or {}).decode()
            signature = part.get("thoughtSignature")
            extra = {"extra_content": {"google": {"thought_signature": signature}}}
            calls.append(
                (call.get("id"), call.get("name", ""), arguments, extra if signature else None)
            )
    return "".join(texts), calls


def _finish_reason(reason: Any, has_calls: bool) -> str:
    return "tool_calls" if has_calls else FINISH_REASONS.get(reason, "stop")


def response(body_: bytes, model: str) -> bytes:
    with translating():
        data = orjson.loads(body_)
        completion_id_ = completion_id(data.get("responseId"))
        response_id = data.get("responseId") or completion_id_.removeprefix("chatcmpl-")
        choices = []
        for position, candidate in enumerate(data.get("candidates") or []):
            index = candidate.get("index", position)
            text, calls = _candidate(candidate)
            tool_calls = [
                tool_call(given or call_id(response_id, index, n), name, arguments) | (extra or {})
                for n, (given, name, arguments, extra) in enumerate(calls)
            ]
            reason = _finish_reason(candidate.get("finishReason"), bool(calls))
            choices.append(choice(index, text or None, tool_calls, reason))
        if not choices:  # no candidates: the prompt itself was blocked, or nothing came
            blocked = (data.get("promptFeedback") or {}).get("blockReason")
            choices.append(choice(0, None, [], "content_filter" if blocked else "stop"))
        upstream_model = data.get("modelVersion") or model
        return completion(completion_id_, upstream_model, choices, usage(data.get("usageMetadata")))


class GoogleStream(SSEStream):
    """Each event is a whole GenerateContentResponse; the stream has no end marker."""

    def on_event(self, event: Event) -> None:
        data = self.json(event)
        if data is None:
            return
        if isinstance(error := data.get("error"), dict):
            message, type_, code, _ = error_fields(data)
            status = error.get("code") if isinstance(error.get("code"), int) else 500
            self.fail(
                message or "The provider reported an error", type_ or error_type(status), code
            )
            return
        if not self.started and data.get("responseId"):
            self.id = completion_id(data["responseId"])
        self.model = data.get("modelVersion") or self.model
        self.usage = usage(data.get("usageMetadata")) or self.usage
        response_id = self.id.removeprefix("chatcmpl-")
        for position, candidate in enumerate(data.get("candidates") or []):
            index = candidate.get("index", position)
            text, calls = _candidate(candidate)
            self.start(index)
            self.text(text, index)
            for given, name, arguments, extra in calls:
                n = self.tool_count(index)
                id_ = given or call_id(response_id, index, n)
                self.tool_start(n, id_, name, arguments, index, extra)
            if candidate.get("finishReason"):
                self.end(
                    _finish_reason(candidate["finishReason"], self.tool_count(index) > 0), index
                )
        if not data.get("candidates") and (data.get("promptFeedback") or {}).get("blockReason"):
            self.end("content_filter")


stream = GoogleStream
error = translate_error  # one reader serves every family's error bodies
