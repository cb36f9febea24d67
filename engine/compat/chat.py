"""The OpenAI chat-completions request, parsed and checked once for every API family.

Families translate from these small records rather than from the raw dict, so a
malformed body is refused here, naming the field, before any provider sees it.
Cloudflare answers such bodies with 400 / 2019 "Chat completion bad format".
OpenAI fields no translated family can use (logprobs, logit_bias, metadata,
store, audio, ...) are accepted and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from engine.errors import PROVIDER_FAILED, GatewayError, bad_request

ROLES = ("system", "developer", "user", "assistant", "tool")
TOOL_CHOICES = ("none", "auto", "required")
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def bad_format(detail: str) -> GatewayError:
    return bad_request(f"Chat completion bad format: {detail}")


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Image:
    url: str
    media_type: str | None = None  # from a data: URL
    data: str | None = None  # the base64 payload of a data: URL; None for http(s) URLs


Part = Text | Image


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the JSON text, as OpenAI sends it
    input: dict[str, Any]  # the same, parsed: most APIs want an object
    signature: str | None = None  # Gemini's thoughtSignature, as Google's OpenAI API returns it


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" (OpenAI's "developer" too), "user", "assistant" or "tool"
    parts: tuple[Part, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.parts if isinstance(part, Text))


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str | None
    parameters: dict[str, Any]  # JSON Schema of the arguments object
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    type: str  # "json_object" or "json_schema"
    name: str | None = None
    schema: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Chat:
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None  # "none" | "auto" | "required" | "function" (named) | unset
    tool_name: str | None = None  # the function a named tool_choice forces
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: str | None = None

    @property
    def system(self) -> list[str]:
        """System and developer texts, wherever they stand in the conversation."""
        return [m.text for m in self.messages if m.role == "system" and m.text]

    @property
    def turns(self) -> list[Message]:
        return [m for m in self.messages if m.role != "system"]


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_format("the body must be valid JSON") from None
    if not isinstance(data, dict):
        raise bad_format("the body must be a JSON object")
    return data


def split_model(model: Any) -> tuple[str, str]:
    """`provider/model` -> (provider, model); the model part may itself contain `/`."""
    if not isinstance(model, str) or not model:
        raise bad_format("'model' must be a non-empty string")
    provider, slash, rest = model.partition("/")
    if not slash or not provider or not rest:
        raise GatewayError(400, PROVIDER_FAILED)  # what Cloudflare answers a bare model id
    return provider, rest


def parse_chat(data: dict[str, Any], *, several_choices: bool = False) -> Chat:
    """Check an OpenAI body; `several_choices` when the API can answer `n` above 1."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_format("'messages' must be a non-empty array")
    tools = _tools(data.get("tools"))
    choice, name = _tool_choice(data.get("tool_choice"), tools)
    max_tokens = data.get("max_completion_tokens")
    field = "max_completion_tokens"
    if max_tokens is None:
        max_tokens, field = data.get("max_tokens"), "max_tokens"
    stream = data.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise bad_format("'stream' must be a boolean")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise bad_format("'stream_options.include_usage' must be a boolean")
    parallel = data.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad_format("'parallel_tool_calls' must be a boolean")
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise bad_format("'user' must be a string")
    n = _integer(data.get("n"), "n", 1) or 1
    if n > 1 and not several_choices:
        raise bad_format("'n' above 1 is not supported by this provider")
    return Chat(
        messages=tuple(_message(m, f"messages[{i}]") for i, m in enumerate(messages)),
        max_tokens=_integer(max_tokens, field, 1),
        temperature=_number(data.get("temperature"), "temperature", 0, 2),
        top_p=_number(data.get("top_p"), "top_p", 0, 1),
        stop=_stop(data.get("stop")),
        n=n,
        stream=bool(stream),
        include_usage=bool(options.get("include_usage", False)),
        tools=tools,
        tool_choice=choice,
        tool_name=name,
        parallel_tool_calls=parallel,
        response_format=_response_format(data.get("response_format")),
        seed=_integer(data.get("seed"), "seed", None),
        presence_penalty=_number(data.get("presence_penalty"), "presence_penalty", -2, 2),
        frequency_penalty=_number(data.get("frequency_penalty"), "frequency_penalty", -2, 2),
        user=user,
    )


def _integer(value: Any, where: str, low: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = f" of at least {low}" if low is not None else ""
        raise bad_format(f"'{where}' must be an integer{bound}")
    return value


def _number(value: Any, where: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise bad_format(f"'{where}' must be a number from {low} to {high}")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise bad_format("'stop' must be a string or an array of strings")


def _message(item: Any, where: str) -> Message:
    if not isinstance(item, dict):
        raise bad_format(f"'{where}' must be an object")
    role = item.get("role")
    if role not in ROLES:
        raise bad_format(f"'{where}.role' must be one of {', '.join(ROLES)}")
    content = item.get("content")
    images = role == "user"
    if role == "assistant" and content is None:
        parts: tuple[Part, ...] = ()
    else:
        parts = _parts(content, f"{where}.content", images)
    if role == "tool":
        call_id = item.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise bad_format(f"'{where}.tool_call_id' must be a non-empty string")
        return Message("tool", parts, tool_call_id=call_id)
    calls: tuple[ToolCall, ...] = ()
    if role == "assistant" and item.get("tool_calls") is not None:
        raw = item["tool_calls"]
        if not isinstance(raw, list):
            raise bad_format(f"'{where}.tool_calls' must be an array")
        calls = tuple(_tool_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(raw))
    return Message("system" if role == "developer" else role, parts, calls)


def _parts(content: Any, where: str, images: bool) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (Text(content),)
    if not isinstance(content, list):
        raise bad_format(f"'{where}' must be a string or an array of content parts")
    parts: list[Part] = []
    for i, part in enumerate(content):
        here = f"{where}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise bad_format(f"'{here}.{kind}' must be a string")
            parts.append(Text(text))
        elif kind == "image_url" and images:
            parts.append(_image(part.get("image_url"), f"{here}.image_url"))
        elif isinstance(kind, str):
            raise bad_format(f"'{here}.type' {kind!r} is not supported here")
        else:
            raise bad_format(f"'{here}' must be an object with a 'type'")
    return tuple(parts)


def _image(value: Any, where: str) -> Image:
    url = value.get("url") if isinstance(value, dict) else None
    if not isinstance(url, str):
        raise bad_format(f"'{where}.url' must be a string")
    if url.startswith(("http://", "https://")):
        return Image(url)
    header, comma, data = url.partition(",")
    if not url.startswith("data:") or not comma or not header.endswith(";base64"):
        raise bad_format(f"'{where}.url' must be an http(s) URL or a base64 data: URL")
    media_type = header[5:].split(";")[0]
    return Image(url, media_type or None, data)


def _tool_call(item: Any, where: str) -> ToolCall:
    function = item.get("function") if isinstance(item, dict) else None
    if not isinstance(function, dict):
        raise bad_format(f"'{where}.function' must be an object")
    call_id, name, arguments = item.get("id"), function.get("name"), function.get("arguments")
    if not isinstance(call_id, str) or not call_id:
        raise bad_format(f"'{where}.id' must be a non-empty string")
    if not isinstance(name, str) or not name:
        raise bad_format(f"'{where}.function.name' must be a non-empty string")
    if not isinstance(arguments, str):
        raise bad_format(f"'{where}.function.arguments' must be a string")
    try:
        parsed = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise bad_format(f"'{where}.function.arguments' must be a JSON object")
    extra = item.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return ToolCall(
        call_id, name, arguments, parsed, signature if isinstance(signature, str) else None
    )


def _tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise bad_format("'tools' must be an array")
    tools = []
    for i, item in enumerate(value):
        where = f"tools[{i}]"
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or item.get("type", "function") != "function":
            raise bad_format(f"'{where}' must be a function tool")
        name, description = function.get("name"), function.get("description")
        parameters = function.get("parameters", NO_PARAMETERS)
        if not isinstance(name, str) or not name:
            raise bad_format(f"'{where}.function.name' must be a non-empty string")
        if description is not None and not isinstance(description, str):
            raise bad_format(f"'{where}.function.description' must be a string")
        if not isinstance(parameters, dict):
            raise bad_format(f"'{where}.function.parameters' must be a JSON Schema object")
        tools.append(Tool(name, description, parameters, function.get("strict") is True))
    return tuple(tools)


def _tool_choice(value: Any, tools: tuple[Tool, ...]) -> tuple[str | None, str | None]:
    if value is None or value in TOOL_CHOICES:
        return value, None
    function = value.get("function") if isinstance(value, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise bad_format("'tool_choice' must be none, auto, required or a named function")
    if name not in {tool.name for tool in tools}:
        raise bad_format(f"'tool_choice' names {name!r}, which is not in 'tools'")
    return "function", name


def _response_format(value: Any) -> ResponseFormat | None:
    kind = value.get("type") if isinstance(value, dict) else None
    if value is None or kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind != "json_schema":
        raise bad_format("'response_format.type' must be text, json_object or json_schema")
    spec = value.get("json_schema")
    schema = spec.get("schema", {}) if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise bad_format("'response_format.json_schema.schema' must be a JSON Schema object")
    name = spec.get("name") if isinstance(spec, dict) else None
    return ResponseFormat("json_schema", name if isinstance(name, str) else None, schema)
