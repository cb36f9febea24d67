"""`/compat/chat/completions` translation, tested without sockets.

Rules for this module:
- Everything the translators produce is read the way a client reads it: each
  completion and each stream chunk is validated with the `openai` SDK's own
  types, and streams are assembled with the SDK's stream state.
- Every upstream stream is fed both byte by byte and in one piece; both must
  give the same OpenAI events (ids and timestamps aside).
- Upstream bodies follow the providers' API references; Bedrock event streams
  are built here with a small encoder that computes real CRCs.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from engine.compat import FAMILIES, parse_body, rewrite_model, split_model, translator
from engine.compat.errors import translate_error
from engine.compat.eventstream import Decoder, EventStreamError
from engine.errors import GatewayError

# --- a conversation, in OpenAI's format ------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}
PNG = "data:image/png;base64,iVBORw0KGgo="
CALLS = [
    {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    },
    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
]
CHAT: dict[str, Any] = {
    "model": "provider/model",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": PNG}},
            ],
        },
        {"role": "assistant", "content": "A cat. Checking the weather.", "tool_calls": CALLS},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
        {"role": "user", "content": "Thanks. And tomorrow?"},
    ],
    "tools": [WEATHER, TIME],
    "tool_choice": "auto",
    "max_tokens": 300,
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": ["END"],
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    },
}
WEATHER_PARAMETERS = WEATHER["function"]["parameters"]
TIME_PARAMETERS = {"type": "object", "properties": {}}
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": WEATHER_PARAMETERS,
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "", "parameters": TIME_PARAMETERS},
    },
]


def chat(**changes: Any) -> dict[str, Any]:
    return {**CHAT, **changes}


def simple(**changes: Any) -> dict[str, Any]:
    return {"model": "p/m", "messages": [{"role": "user", "content": "Hi"}], **changes}


def translated(family: str, body: dict[str, Any], model: str = "m") -> dict[str, Any]:
    return orjson.loads(translator(family).request(body, model).body)


# --- the OpenAI request: validation ----------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "p/m"}, "'messages' must be a non-empty array"),
        (simple(messages=[{"role": "robot", "content": "x"}]), "'messages[0].role' must be one of"),
        (
            simple(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]),
            "'messages[0].content[0].type' 'input_audio' is not supported here",
        ),
        (
            simple(messages=[{"role": "system", "content": [{"type": "image_url"}]}]),
            "'messages[0].content[0].type' 'image_url' is not supported here",
        ),
        (
            simple(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}],
                    }
                ]
            ),
            "'messages[0].content[0].image_url.url' must be an http(s) URL or a base64 data: URL",
        ),
        (simple(messages=[{"role": "tool", "content": "x"}]), "'messages[0].tool_call_id' must be"),
        (
            simple(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{**CALLS[1], "function": {"name": "f", "arguments": "[1]"}}],
                    }
                ]
            ),
            "'messages[0].tool_calls[0].function.arguments' must be a JSON object",
        ),
        (simple(temperature=3), "'temperature' must be a number from 0 to 2"),
        (simple(top_p="high"), "'top_p' must be a number from 0 to 1"),
        (simple(max_tokens=0), "'max_tokens' must be an integer of at least 1"),
        (simple(max_completion_tokens=True), "'max_completion_tokens' must be an integer"),
        (simple(stop=[1]), "'stop' must be a string or an array of strings"),
        (simple(stream="yes"), "'stream' must be a boolean"),
        (simple(tools=[{"type": "retrieval"}]), "'tools[0]' must be a function tool"),
        (
            simple(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}),
            "'tool_choice' names 'nope', which is not in 'tools'",
        ),
        (simple(response_format={"type": "xml"}), "'response_format.type' must be text"),
        (
            simple(response_format={"type": "json_schema", "json_schema": {"schema": []}}),
            "'response_format.json_schema.schema' must be a JSON Schema object",
        ),
    ],
)
def test_malformed_bodies_are_refused_naming_the_field(body: dict[str, Any], message: str) -> None:
    for family in FAMILIES:
        with pytest.raises(GatewayError) as caught:
            translator(family).request(body, "m")
        error = caught.value
        assert (error.status, error.code) == (400, 2019)
        assert error.message.startswith("Chat completion bad format: ")
        assert message in error.message
        assert orjson.loads(error.body())["error"][0]["message"] == error.message


def test_body_and_model_parsing() -> None:
    assert parse_body(b'{"model": "a/b"}') == {"model": "a/b"}
    for bad in (b"not json", b"[1]"):
        with pytest.raises(GatewayError) as caught:
            parse_body(bad)
        assert caught.value.code == 2019
    assert split_model("workers-ai/@cf/meta/llama-3.1-8b-instruct") == (
        "workers-ai",
        "@cf/meta/llama-3.1-8b-instruct",
    )
    assert split_model("google-vertex-ai/google/gemini-2.5-pro") == (
        "google-vertex-ai",
        "google/gemini-2.5-pro",
    )
    with pytest.raises(GatewayError) as caught:  # Cloudflare: no provider prefix is 2005
        split_model("gpt-4o")
    assert (caught.value.status, caught.value.code) == (400, 2005)


def test_n_above_one_is_refused_where_the_api_has_no_candidates() -> None:
    for family in ("anthropic", "bedrock-converse", "cohere", "workers-ai"):
        with pytest.raises(GatewayError, match="'n' above 1"):
            translator(family).request(simple(n=2), "m")
    assert translated("google", simple(n=2))["generationConfig"] == {"candidateCount": 2}


# --- the OpenAI request: one conversation, five APIs -----------------------------

ANTHROPIC_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 300,
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "A cat. Checking the weather."},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": '{"temperature": 21}'},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "14:05"},
                {"type": "text", "text": "Thanks. And tomorrow?"},
            ],
        },
    ],
    "system": [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Answer in English."},
    ],
    "stop_sequences": ["END"],
    "temperature": 0.2,
    "top_p": 0.9,
    "tools": [
        {
            "name": "get_weather",
            "input_schema": WEATHER_PARAMETERS,
            "description": "Weather for a city",
            "strict": True,
        },
        {"name": "get_time", "input_schema": TIME_PARAMETERS},
    ],
    "tool_choice": {"type": "auto"},
    "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
}
GOOGLE_BODY = {
    "contents": [
        {
            "role": "user",
            "parts": [
                {"text": "What is in this picture?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "A cat. Checking the weather."},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": "skip_thought_signature_validator",
                },
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temperature": 21}}},
                {"functionResponse": {"name": "get_time", "response": {"output": "14:05"}}},
                {"text": "Thanks. And tomorrow?"},
            ],
        },
    ],
    "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Answer in English."}]},
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "parametersJsonSchema": WEATHER_PARAMETERS,
                    "description": "Weather for a city",
                },
                {"name": "get_time", "parametersJsonSchema": TIME_PARAMETERS},
            ]
        }
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    "generationConfig": {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 300,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": SCHEMA,
    },
}
BEDROCK_BODY = {
    "messages": [
        {
            "role": "user",
            "content": [
                {"text": "What is in this picture?"},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"text": "A cat. Checking the weather."},
                {
                    "toolUse": {
                        "toolUseId": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                },
                {"toolUse": {"toolUseId": "call_2", "name": "get_time", "input": {}}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "call_1",
                        "content": [{"text": '{"temperature": 21}'}],
                    }
                },
                {"toolResult": {"toolUseId": "call_2", "content": [{"text": "14:05"}]}},
                {"text": "Thanks. And tomorrow?"},
            ],
        },
    ],
    "system": [{"text": "Be brief."}, {"text": "Answer in English."}],
    "inferenceConfig": {
        "maxTokens": 300,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
    },
    "toolConfig": {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {"json": WEATHER_PARAMETERS},
                    "description": "Weather for a city",
                    "strict": True,
                }
            },
            {"toolSpec": {"name": "get_time", "inputSchema": {"json": TIME_PARAMETERS}}},
        ],
        "toolChoice": {"auto": {}},
    },
    "outputConfig": {
        "textFormat": {
            "type": "json_schema",
            "structure": {
                "jsonSchema": {"schema": orjson.dumps(SCHEMA).decode(), "name": "answer"}
            },
        }
    },
}
# Cohere and Workers AI take OpenAI's messages; developer becomes system, text parts a string.
OPENAI_MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "system", "content": "Answer in English."},
    *CHAT["messages"][2:],
]
COHERE_BODY = {
    "model": "command-a-03-2025",
    "messages": OPENAI_MESSAGES,
    "tools": OPENAI_TOOLS,
    "max_tokens": 300,
    "temperature": 0.2,
    "p": 0.9,
    "stop_sequences": ["END"],
    "response_format": {"type": "json_object", "json_schema": SCHEMA},
}
WORKERS_AI_BODY = {
    "messages": OPENAI_MESSAGES,
    "tools": OPENAI_TOOLS,
    "max_tokens": 300,
    "temperature": 0.2,
    "top_p": 0.9,
    "response_format": {"type": "json_schema", "json_schema": SCHEMA},
}


@pytest.mark.parametrize(
    ("family", "model", "path", "body"),
    [
        ("anthropic", "claude-sonnet-4-5", "v1/messages", ANTHROPIC_BODY),
        (
            "google",
            "gemini-2.5-flash",
            "v1beta/models/gemini-2.5-flash:generateContent",
            GOOGLE_BODY,
        ),
        (
            "bedrock-converse",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
            BEDROCK_BODY,
        ),
        ("cohere", "command-a-03-2025", "v2/chat", COHERE_BODY),
        (
            "workers-ai",
            "@cf/meta/llama-4-scout-17b-16e-instruct",
            "run/@cf/meta/llama-4-scout-17b-16e-instruct",
            WORKERS_AI_BODY,
        ),
    ],
)
def test_conversation_with_system_image_tools_and_schema(
    family: str, model: str, path: str, body: dict[str, Any]
) -> None:
    call = translator(family).request(CHAT, model)
    assert call.path == path
    assert orjson.loads(call.body) == body
    assert (b"content-type", b"application/json") in call.headers


def test_anthropic_needs_a_version_header_and_a_max_tokens() -> None:
    call = translator("anthropic").request(simple(), "claude-haiku-4-5")
    assert (b"anthropic-version", b"2023-06-01") in call.headers
    assert orjson.loads(call.body) == {
        "model": "claude-haiku-4-5",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }
    body = translated("anthropic", simple(max_completion_tokens=50, max_tokens=10, user="u-1"))
    assert (body["max_tokens"], body["metadata"]) == (50, {"user_id": "u-1"})


@pytest.mark.parametrize(
    ("family", "stream_path", "stream_field"),
    [
        ("anthropic", "v1/messages", True),
        ("google", "v1beta/models/m:streamGenerateContent?alt=sse", None),
        ("bedrock-converse", "model/m/converse-stream", None),
        ("cohere", "v2/chat", True),
        ("workers-ai", "run/m", True),
    ],
)
def test_streaming_requests(family: str, stream_path: str, stream_field: bool | None) -> None:
    body = simple(stream=True, stream_options={"include_usage": True})
    call = translator(family).request(body, "m")
    assert call.path == stream_path
    assert orjson.loads(call.body).get("stream") is stream_field
    assert (call.stream, call.include_usage) == (True, True)
    plain = translator(family).request(simple(), "m")
    assert (plain.stream, plain.include_usage) == (False, False)


TOOLS = [WEATHER, TIME]
NAMED = {"type": "function", "function": {"name": "get_time"}}


@pytest.mark.parametrize(
    ("family", "tool_choice", "expected"),
    [
        ("anthropic", "none", {"tool_choice": {"type": "none"}}),
        ("anthropic", "required", {"tool_choice": {"type": "any"}}),
        ("anthropic", NAMED, {"tool_choice": {"type": "tool", "name": "get_time"}}),
        ("google", "none", {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}),
        ("google", "required", {"toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}),
        (
            "google",
            NAMED,
            {
                "toolConfig": {
                    "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
                }
            },
        ),
        ("bedrock-converse", "none", {"toolConfig": None}),
        ("bedrock-converse", "required", {"toolConfig.toolChoice": {"any": {}}}),
        ("bedrock-converse", NAMED, {"toolConfig.toolChoice": {"tool": {"name": "get_time"}}}),
        ("cohere", "none", {"tool_choice": "NONE"}),
        ("cohere", "required", {"tool_choice": "REQUIRED"}),
        ("cohere", NAMED, {"tool_choice": "REQUIRED", "tools": [OPENAI_TOOLS[1]]}),
        ("cohere", "auto", {"tool_choice": None}),
        ("workers-ai", "none", {"tools": None}),
    ],
)
def test_tool_choice(family: str, tool_choice: Any, expected: dict[str, Any]) -> None:
    body = translated(family, simple(tools=TOOLS, tool_choice=tool_choice))
    for path, value in expected.items():
        found: Any = body
        for key in path.split("."):
            found = found.get(key) if isinstance(found, dict) else None
        assert found == value, path


def test_anthropic_parallel_tool_calls_off() -> None:
    body = translated("anthropic", simple(tools=TOOLS, parallel_tool_calls=False))
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_bedrock_keeps_tools_when_history_has_tool_calls_even_for_none() -> None:
    # Converse refuses toolUse/toolResult blocks without a toolConfig.
    body = translated("bedrock-converse", chat(tool_choice="none"))
    assert [t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]] == [
        "get_weather",
        "get_time",
    ]
    assert "toolChoice" not in body["toolConfig"]


@pytest.mark.parametrize(
    ("family", "field", "expected"),
    [
        (
            "anthropic",
            "messages.0.content.0.source",
            {"type": "url", "url": "https://example.com/cat.jpg?s=1"},
        ),
        (
            "google",
            "contents.0.parts.0.fileData",
            {"fileUri": "https://example.com/cat.jpg?s=1", "mimeType": "image/jpeg"},
        ),
        ("cohere", "messages.0.content.0.image_url.url", "https://example.com/cat.jpg?s=1"),
        ("workers-ai", "messages.0.content.0.image_url.url", "https://example.com/cat.jpg?s=1"),
    ],
)
def test_image_urls(family: str, field: str, expected: Any) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg?s=1"}}
    found: Any = translated(family, simple(messages=[{"role": "user", "content": [image]}]))
    for key in field.split("."):
        found = found[int(key)] if isinstance(found, list) else found[key]
    assert found == expected


def test_bedrock_refuses_image_urls_it_cannot_receive() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    body = simple(messages=[{"role": "user", "content": [image]}])
    with pytest.raises(
        GatewayError, match=r"'messages\[0\].content\[0\].image_url.url' must be a data: URL"
    ):
        translator("bedrock-converse").request(body, "m")
    svg = {"type": "image_url", "image_url": {"url": "data:image/svg+xml;base64,PHN2Zz4="}}
    with pytest.raises(GatewayError, match="PNG, JPEG, GIF or WebP"):
        translator("bedrock-converse").request(
            simple(messages=[{"role": "user", "content": [svg]}]), "m"
        )


def test_google_maps_tool_results_back_by_function_name() -> None:
    orphan = simple(messages=[{"role": "tool", "tool_call_id": "call_9", "content": "x"}])
    with pytest.raises(GatewayError, match=r"'messages\[0\].tool_call_id' matches no tool call"):
        translator("google").request(orphan, "m")
    signed = {**CALLS[0], "extra_content": {"google": {"thought_signature": "c2ln"}}}
    body = translated("google", simple(messages=[{"role": "assistant", "tool_calls": [signed]}]))
    assert body["contents"][0]["parts"][0]["thoughtSignature"] == "c2ln"


@pytest.mark.parametrize(
    ("family", "field", "expected"),
    [
        ("anthropic", "output_config", None),  # no schema-free JSON mode at Anthropic
        ("google", "generationConfig", {"responseMimeType": "application/json"}),
        ("bedrock-converse", "outputConfig", None),
        ("cohere", "response_format", {"type": "json_object"}),
        ("workers-ai", "response_format", {"type": "json_object"}),
    ],
)
def test_json_object_response_format(family: str, field: str, expected: Any) -> None:
    body = translated(family, simple(response_format={"type": "json_object"}))
    assert body.get(field) == expected


def test_openai_compatible_providers_only_get_the_model_rewritten() -> None:
    raw = (
        b'{ "messages" : [{"role":"user","content":"say \\"model\\": 1"}],\n'
        b' "model" : "groq/llama-3.3-70b", "x": 1.50}'
    )
    out = rewrite_model(raw, orjson.loads(raw), "llama-3.3-70b")
    assert out == raw.replace(b'"groq/llama-3.3-70b"', b'"llama-3.3-70b"')
    nested = b'{"model": "openai/gpt-4o", "metadata": {"model": "x"}}'
    out = rewrite_model(nested, orjson.loads(nested), "gpt-4o")
    assert orjson.loads(out) == {"model": "gpt-4o", "metadata": {"model": "x"}}


# --- responses -------------------------------------------------------------------


def completion(family: str, body: dict[str, Any], model: str = "m") -> ChatCompletion:
    return ChatCompletion.model_validate_json(
        translator(family).response(orjson.dumps(body), model)
    )


def anthropic_message(stop_reason: str = "tool_use") -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "hidden", "signature": "s"},
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 100,
            "cache_read_input_tokens": 300,
            "cache_creation_input_tokens": 50,
            "output_tokens": 20,
        },
    }


def google_response(finish_reason: str = "STOP", call: bool = True) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"text": "thinking...", "thought": True},
        {"text": "Let me check."},
    ]
    if call:
        parts.append(
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "c2ln",
            }
        )
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": finish_reason,
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 450,
            "cachedContentTokenCount": 300,
            "candidatesTokenCount": 20,
            "thoughtsTokenCount": 10,
            "totalTokenCount": 480,
        },
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "resp1",
    }


BEDROCK_USAGE = {
    "inputTokens": 100,
    "outputTokens": 20,
    "totalTokens": 470,
    "cacheReadInputTokens": 300,
    "cacheWriteInputTokens": 50,
}


def bedrock_output(stop_reason: str = "tool_use") -> dict[str, Any]:
    return {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"text": "Let me check."},
                    {
                        "toolUse": {
                            "toolUseId": "tooluse_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        }
                    },
                ],
            }
        },
        "stopReason": stop_reason,
        "usage": BEDROCK_USAGE,
        "metrics": {"latencyMs": 512},
    }


def cohere_response(finish_reason: str = "TOOL_CALL") -> dict[str, Any]:
    return {
        "id": "c0ffee",
        "finish_reason": finish_reason,
        "message": {
            "role": "assistant",
            "tool_plan": "I will check the weather.",
            "content": [{"type": "text", "text": "Let me check."}],
            "tool_calls": [
                {
                    "id": "get_weather_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        "usage": {
            "billed_units": {"input_tokens": 400, "output_tokens": 20},
            "tokens": {"input_tokens": 450, "output_tokens": 20},
            "cached_tokens": 300,
        },
    }


def workers_ai_result(tool_calls: Any = None, response: Any = "Let me check.") -> dict[str, Any]:
    result: dict[str, Any] = {
        "response": response,
        "usage": {"prompt_tokens": 450, "completion_tokens": 20, "total_tokens": 470},
    }
    if tool_calls is not None:
        result["tool_calls"] = tool_calls
    return {"result": result, "success": True, "errors": [], "messages": []}


LEGACY_CALL = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
CACHED = {"prompt_tokens": 450, "completion_tokens": 20, "total_tokens": 470, "cached": 300}


@pytest.mark.parametrize(
    ("family", "body", "model", "call_id", "usage"),
    [
        (
            "anthropic",
            anthropic_message(),
            "claude-sonnet-4-5-20250929",
            "toolu_1",
            {**CACHED, "write": 50},
        ),
        (
            "google",
            google_response(),
            "gemini-2.5-flash-001",
            "call_resp1_0_0",
            {**CACHED, "completion_tokens": 30, "total_tokens": 480, "reasoning": 10},
        ),
        ("bedrock-converse", bedrock_output(), "m", "tooluse_1", {**CACHED, "write": 50}),
        ("cohere", cohere_response(), "m", "get_weather_1", CACHED),
        ("workers-ai", workers_ai_result(LEGACY_CALL), "m", None, {**CACHED, "cached": 0}),
    ],
)
def test_response_with_text_and_a_tool_call(
    family: str, body: dict[str, Any], model: str, call_id: str | None, usage: dict[str, int]
) -> None:
    result = completion(family, body)
    assert result.id.startswith("chatcmpl-")
    assert result.model == model
    [only] = result.choices
    assert only.message.role == "assistant"
    assert only.message.content == "Let me check."
    assert only.finish_reason == "tool_calls"
    [call] = only.message.tool_calls or []
    assert (call.function.name, orjson.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Paris"},
    )
    assert call.id == call_id or (call_id is None and call.id.startswith("call_"))
    assert result.usage is not None
    assert result.usage.prompt_tokens == usage["prompt_tokens"]
    assert result.usage.completion_tokens == usage["completion_tokens"]
    assert result.usage.total_tokens == usage["total_tokens"]
    details = result.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens == usage["cached"]
    assert details.cache_write_tokens == (usage.get("write") or None)
    reasoning = result.usage.completion_tokens_details
    assert (reasoning.reasoning_tokens if reasoning else None) == usage.get("reasoning")


def test_google_returns_the_thought_signature_for_the_next_turn() -> None:
    [call] = completion("google", google_response()).choices[0].message.tool_calls or []
    assert call.model_extra == {"extra_content": {"google": {"thought_signature": "c2ln"}}}


@pytest.mark.parametrize(
    ("family", "body", "finish_reason"),
    [
        ("anthropic", anthropic_message("end_turn"), "stop"),
        ("anthropic", anthropic_message("stop_sequence"), "stop"),
        ("anthropic", anthropic_message("pause_turn"), "stop"),
        ("anthropic", anthropic_message("max_tokens"), "length"),
        ("anthropic", anthropic_message("model_context_window_exceeded"), "length"),
        ("anthropic", anthropic_message("refusal"), "content_filter"),
        ("google", google_response("STOP", call=False), "stop"),
        ("google", google_response("MAX_TOKENS", call=False), "length"),
        ("google", google_response("SAFETY", call=False), "content_filter"),
        ("google", google_response("RECITATION", call=False), "content_filter"),
        ("google", google_response("PROHIBITED_CONTENT", call=False), "content_filter"),
        ("google", google_response("MALFORMED_FUNCTION_CALL", call=False), "stop"),
        ("google", {"promptFeedback": {"blockReason": "SAFETY"}}, "content_filter"),
        ("bedrock-converse", bedrock_output("end_turn"), "stop"),
        ("bedrock-converse", bedrock_output("stop_sequence"), "stop"),
        ("bedrock-converse", bedrock_output("max_tokens"), "length"),
        ("bedrock-converse", bedrock_output("model_context_window_exceeded"), "length"),
        ("bedrock-converse", bedrock_output("guardrail_intervened"), "content_filter"),
        ("bedrock-converse", bedrock_output("content_filtered"), "content_filter"),
        ("cohere", cohere_response("COMPLETE"), "stop"),
        ("cohere", cohere_response("STOP_SEQUENCE"), "stop"),
        ("cohere", cohere_response("MAX_TOKENS"), "length"),
        ("cohere", cohere_response("ERROR"), "stop"),
        ("workers-ai", workers_ai_result(), "stop"),
        (
            "workers-ai",
            {
                "result": {
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Let"},
                            "finish_reason": "length",
                        }
                    ]
                }
            },
            "length",
        ),
    ],
)
def test_every_stop_reason(family: str, body: dict[str, Any], finish_reason: str) -> None:
    assert completion(family, body).choices[0].finish_reason == finish_reason


def test_google_candidates_become_choices() -> None:
    body = google_response(call=False)
    second = {**body["candidates"][0], "index": 1, "content": {"parts": [{"text": "Other."}]}}
    body["candidates"].append(second)
    result = completion("google", body)
    assert [(c.index, c.message.content) for c in result.choices] == [
        (0, "Let me check."),
        (1, "Other."),
    ]


def test_workers_ai_answer_shapes() -> None:
    openai_call = [
        {"id": "call_x", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    result = completion("workers-ai", workers_ai_result(openai_call, response=None))
    assert result.choices[0].message.content is None
    assert result.choices[0].message.tool_calls[0].id == "call_x"  # type: ignore[index]
    json_mode = completion("workers-ai", workers_ai_result(response={"answer": "Paris"}))
    assert orjson.loads(json_mode.choices[0].message.content or "") == {"answer": "Paris"}


ODD = b'{"content": 7, "output": 7, "message": 7, "result": 7, "candidates": 7}'


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("body", [b"<html>", b"[]", ODD])
def test_unreadable_success_bodies_are_a_gateway_error(family: str, body: bytes) -> None:
    with pytest.raises(GatewayError) as caught:
        translator(family).response(body, "m")
    assert (caught.value.status, caught.value.code) == (502, 2005)


# --- streams ---------------------------------------------------------------------


def sse(*events: tuple[str | None, Any], newline: str = "\n") -> bytes:
    out = ""
    for name, data in events:
        text = data if isinstance(data, str) else orjson.dumps(data).decode()
        out += (f"event: {name}{newline}" if name else "") + f"data: {text}{newline}{newline}"
    return out.encode()


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event stream message with string headers and real CRCs."""
    raw = b"".join(
        bytes([len(name)])
        + name.encode()
        + b"\x07"
        + struct.pack(">H", len(value))
        + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(raw) + len(payload) + 4, len(raw))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw + payload
    return message + struct.pack(">I", zlib.crc32(message))


def converse_event(kind: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, orjson.dumps({**payload, "p": "abcdefghijklmnop"}))


def converse_exception(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, orjson.dumps({"message": message}))


def anthropic_delta(index: int, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


ANTHROPIC_START = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5-20250929",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 100,
                "cache_read_input_tokens": 300,
                "cache_creation_input_tokens": 50,
                "output_tokens": 1,
            },
        },
    },
)
ANTHROPIC_TEXT = [
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    ("ping", {"type": "ping"}),
    anthropic_delta(0, {"type": "text_delta", "text": "Let me "}),
    anthropic_delta(0, {"type": "text_delta", "text": "check."}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
]
ANTHROPIC_STREAM = sse(
    ANTHROPIC_START,
    *ANTHROPIC_TEXT,
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {},
            },
        },
    ),
    anthropic_delta(1, {"type": "input_json_delta", "partial_json": ""}),
    anthropic_delta(1, {"type": "input_json_delta", "partial_json": '{"city": '}),
    anthropic_delta(1, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 20},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
)
GOOGLE_USAGE = {
    "promptTokenCount": 450,
    "cachedContentTokenCount": 300,
    "candidatesTokenCount": 20,
    "totalTokenCount": 470,
}
GOOGLE_STREAM = sse(
    (
        None,
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": "Let me "}]}, "index": 0}
            ],
            "usageMetadata": {"promptTokenCount": 450, "totalTokenCount": 450},
            "modelVersion": "gemini-2.5-flash-001",
            "responseId": "resp1",
        },
    ),
    (
        None,
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "check."},
                            {
                                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                                "thoughtSignature": "c2ln",
                            },
                        ],
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": GOOGLE_USAGE,
            "modelVersion": "gemini-2.5-flash-001",
            "responseId": "resp1",
        },
    ),
    newline="\r\n",
)
BEDROCK_START = converse_event("messageStart", {"role": "assistant"})
BEDROCK_TEXT = b"".join(
    converse_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}})
    for text in ("Let me ", "check.")
)
BEDROCK_STREAM = b"".join(
    [
        BEDROCK_START,
        BEDROCK_TEXT,
        converse_event("contentBlockStop", {"contentBlockIndex": 0}),
        converse_event(
            "contentBlockStart",
            {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}},
            },
        ),
        converse_event(
            "contentBlockDelta",
            {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city": '}}},
        ),
        converse_event(
            "contentBlockDelta",
            {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}},
        ),
        converse_event("contentBlockStop", {"contentBlockIndex": 1}),
        converse_event("messageStop", {"stopReason": "tool_use"}),
        converse_event(
            "metadata",
            {
                "usage": BEDROCK_USAGE,
                "metrics": {"latencyMs": 100},
            },
        ),
    ]
)


def cohere_event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, **fields}


def cohere_message(**message: Any) -> dict[str, Any]:
    return {"message": message}


COHERE_START = cohere_event(
    "message-start",
    id="c0ffee",
    delta=cohere_message(role="assistant", content=[], tool_plan="", tool_calls=[], citations=[]),
)
COHERE_TEXT = [
    cohere_event(
        "content-start", index=0, delta=cohere_message(content={"type": "text", "text": ""})
    ),
    cohere_event("content-delta", index=0, delta=cohere_message(content={"text": "Let me "})),
    cohere_event("content-delta", index=0, delta=cohere_message(content={"text": "check."})),
    cohere_event("content-end", index=0),
]
COHERE_STREAM = sse(
    COHERE_START,
    cohere_event("tool-plan-delta", delta=cohere_message(tool_plan="I will check")),
    *COHERE_TEXT,
    cohere_event(
        "tool-call-start",
        index=0,
        delta=cohere_message(
            tool_calls={
                "id": "get_weather_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ),
    ),
    cohere_event(
        "tool-call-delta",
        index=0,
        delta=cohere_message(tool_calls={"function": {"arguments": '{"city": '}}),
    ),
    cohere_event(
        "tool-call-delta",
        index=0,
        delta=cohere_message(tool_calls={"function": {"arguments": '"Paris"}'}}),
    ),
    cohere_event("tool-call-end", index=0),
    cohere_event(
        "message-end",
        delta={
            "finish_reason": "TOOL_CALL",
            "usage": {
                "billed_units": {"input_tokens": 400, "output_tokens": 20},
                "tokens": {"input_tokens": 450, "output_tokens": 20},
                "cached_tokens": 300,
            },
        },
    ),
)
WORKERS_AI_STREAM = sse(
    (None, {"response": "Let me ", "p": "abcdef"}),
    (None, {"response": "check.", "p": "abcdef"}),
    (
        None,
        {
            "response": "",
            "usage": {"prompt_tokens": 450, "completion_tokens": 20, "total_tokens": 470},
        },
    ),
    (None, "[DONE]"),
)
WEATHER_CALL = ("get_weather", {"city": "Paris"})


def run(family: str, data: bytes, bytewise: bool, include_usage: bool = True) -> tuple[bytes, Any]:
    stream = translator(family).stream("m", include_usage)
    if bytewise:
        out = b"".join(stream.feed(data[i : i + 1]) for i in range(len(data)))
    else:
        out = stream.feed(data)
    return out + stream.finish(), stream.usage


def events(out: bytes) -> list[tuple[str | None, Any]]:
    """The SSE events a client reads: (event name, decoded data or "[DONE]")."""
    found = []
    for block in out.split(b"\n\n")[:-1]:
        lines = block.decode().split("\n")
        name = lines[0].removeprefix("event: ") if lines[0].startswith("event: ") else None
        data = lines[-1].removeprefix("data: ")
        found.append((name, data if data == "[DONE]" else orjson.loads(data)))
    assert out.endswith(b"\n\n") or not out
    return found


def without_ids(found: list[tuple[str | None, Any]]) -> list[tuple[str | None, Any]]:
    return [
        (
            name,
            {k: v for k, v in data.items() if k not in ("id", "created")}
            if isinstance(data, dict)
            else data,
        )
        for name, data in found
    ]


def assembled(
    found: list[tuple[str | None, Any]],
) -> tuple[ChatCompletion, list[ChatCompletionChunk]]:
    """The stream as the openai SDK's stream state assembles it (it validates each chunk)."""
    state = ChatCompletionStreamState()
    chunks = [ChatCompletionChunk.model_validate(data) for name, data in found if data != "[DONE]"]
    for chunk in chunks:
        state.handle_chunk(chunk)
    return state.get_final_completion(), chunks


@pytest.mark.parametrize(
    ("family", "upstream", "tool_id", "usage"),
    [
        ("anthropic", ANTHROPIC_STREAM, "toolu_1", (450, 20, 300)),
        ("google", GOOGLE_STREAM, "call_resp1_0_0", (450, 20, 300)),
        ("bedrock-converse", BEDROCK_STREAM, "tooluse_1", (450, 20, 300)),
        ("cohere", COHERE_STREAM, "get_weather_1", (450, 20, 300)),
        ("workers-ai", WORKERS_AI_STREAM, None, (450, 20, 0)),
    ],
)
def test_stream_translation(
    family: str, upstream: bytes, tool_id: str | None, usage: tuple[int, int, int]
) -> None:
    whole, seen = run(family, upstream, bytewise=False)
    bytewise, _ = run(family, upstream, bytewise=True)
    assert without_ids(events(whole)) == without_ids(events(bytewise))

    found = events(whole)
    assert found[-1] == (None, "[DONE]")
    assert all(name is None for name, _ in found)
    final, chunks = assembled(found)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    [answer] = final.choices
    assert answer.message.content == "Let me check."
    calls = [
        (c.id, c.function.name, orjson.loads(c.function.arguments))
        for c in answer.message.tool_calls or []
    ]
    assert calls == ([(tool_id, *WEATHER_CALL)] if tool_id else [])
    assert answer.finish_reason == ("tool_calls" if tool_id else "stop")
    # The usage chunk comes last, with no choices, as OpenAI sends it.
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    totals = chunks[-1].usage
    cached = totals.prompt_tokens_details.cached_tokens if totals.prompt_tokens_details else None
    assert (totals.prompt_tokens, totals.completion_tokens, cached) == usage
    assert (seen.prompt_tokens, seen.completion_tokens, seen.cached_tokens) == usage


@pytest.mark.parametrize(
    ("family", "upstream"),
    [
        ("anthropic", ANTHROPIC_STREAM),
        ("google", GOOGLE_STREAM),
        ("bedrock-converse", BEDROCK_STREAM),
        ("cohere", COHERE_STREAM),
        ("workers-ai", WORKERS_AI_STREAM),
    ],
)
def test_stream_without_usage_chunk_still_counts_tokens(family: str, upstream: bytes) -> None:
    out, seen = run(family, upstream, bytewise=False, include_usage=False)
    found = events(out)
    assert found[-1] == (None, "[DONE]")
    assert all(data["choices"] for _, data in found[:-1])
    assert seen.prompt_tokens == 450


def test_done_goes_out_with_the_last_upstream_event() -> None:
    stream = translator("anthropic").stream("m", True)
    assert stream.feed(ANTHROPIC_STREAM).endswith(b"data: [DONE]\n\n")
    assert stream.finish() == b""


def test_google_stream_returns_the_thought_signature() -> None:
    final, _ = assembled(events(run("google", GOOGLE_STREAM, bytewise=False)[0]))
    [call] = final.choices[0].message.tool_calls or []
    assert (call.model_extra or {})["extra_content"] == {"google": {"thought_signature": "c2ln"}}


# --- errors ----------------------------------------------------------------------


def openai_client(response: httpx.Response) -> openai.OpenAI:
    """The real OpenAI SDK, answered by `response` without a socket."""
    transport = httpx.MockTransport(lambda request: response)
    return openai.OpenAI(
        api_key="k",
        base_url="http://gateway.test/compat",
        http_client=httpx.Client(transport=transport),
        max_retries=0,
    )


def create(client: openai.OpenAI, stream: bool) -> Any:
    messages: Any = [{"role": "user", "content": "Hi"}]
    return client.chat.completions.create(model="p/m", messages=messages, stream=stream)


@pytest.mark.parametrize(
    ("status", "body", "message", "type_", "code"),
    [
        (
            400,
            {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "max_tokens: too big"},
                "request_id": "req_1",
            },
            "max_tokens: too big",
            "invalid_request_error",
            None,
        ),
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "Overloaded",
            "overloaded_error",
            None,
        ),
        (
            400,
            {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}},
            "API key not valid.",
            "invalid_request_error",
            "INVALID_ARGUMENT",
        ),
        (
            429,
            [{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}],
            "Quota exceeded",
            "rate_limit_error",
            "RESOURCE_EXHAUSTED",
        ),
        (
            400,
            {"message": "The provided model identifier is invalid."},
            "The provided model identifier is invalid.",
            "invalid_request_error",
            None,
        ),
        (
            401,
            {"id": "e1", "message": "invalid api token"},
            "invalid api token",
            "authentication_error",
            None,
        ),
        (
            400,
            {
                "errors": [{"message": "AiError: Bad input", "code": 5006}],
                "success": False,
                "result": None,
                "messages": [],
            },
            "AiError: Bad input",
            "invalid_request_error",
            "5006",
        ),
        (502, b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>", "server_error", None),
        (503, b"", "503 Service Unavailable", "server_error", None),
    ],
)
def test_provider_errors_become_openai_errors(
    status: int, body: Any, message: str, type_: str, code: str | None
) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    for family in FAMILIES:
        translated_ = orjson.loads(translator(family).error(status, raw))
        assert translated_ == {
            "error": {"message": message, "type": type_, "param": None, "code": code}
        }
    # What the client notices: the SDK raises its error for that status, with the message.
    client = openai_client(httpx.Response(status, content=translate_error(status, raw)))
    with pytest.raises(openai.APIStatusError) as caught:
        create(client, stream=False)
    assert caught.value.status_code == status
    assert caught.value.message == f"Error code: {status} - {message}"
    assert isinstance(caught.value.body, dict) and caught.value.body["message"] == message


@pytest.mark.parametrize(
    ("family", "upstream", "message", "type_", "code"),
    [
        (
            "anthropic",
            sse(
                ANTHROPIC_START,
                *ANTHROPIC_TEXT,
                (
                    "error",
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    },
                ),
            ),
            "Overloaded",
            "overloaded_error",
            None,
        ),
        (
            "google",
            GOOGLE_STREAM.split(b"\r\n\r\n")[0]
            + b"\r\n\r\n"
            + sse(
                (
                    None,
                    {
                        "error": {
                            "code": 503,
                            "message": "The model is overloaded.",
                            "status": "UNAVAILABLE",
                        }
                    },
                )
            ),
            "The model is overloaded.",
            "server_error",
            "UNAVAILABLE",
        ),
        (
            "bedrock-converse",
            BEDROCK_START
            + BEDROCK_TEXT
            + converse_exception("throttlingException", "Too many requests"),
            "Too many requests",
            "rate_limit_error",
            "throttlingException",
        ),
        (
            "cohere",
            sse(
                COHERE_START,
                *COHERE_TEXT,
                cohere_event(
                    "message-end", delta={"finish_reason": "ERROR", "error": "internal failure"}
                ),
            ),
            "internal failure",
            "server_error",
            "ERROR",
        ),
        (
            "workers-ai",
            sse(
                (None, {"response": "Let me "}),
                (None, {"response": "check."}),
                ("error", {"errors": [{"message": "AiError: model crashed", "code": 3040}]}),
            ),
            "AiError: model crashed",
            "server_error",
            "3040",
        ),
    ],
)
def test_error_in_the_middle_of_a_stream(
    family: str, upstream: bytes, message: str, type_: str, code: str | None
) -> None:
    whole, _ = run(family, upstream, bytewise=False)
    bytewise, _ = run(family, upstream, bytewise=True)
    assert without_ids(events(whole)) == without_ids(events(bytewise))
    found = events(whole)
    assert found[-1] == (
        "error",
        {
            "type": "error",
            "error": {"message": message, "type": type_, "param": None, "code": code},
        },
    )
    assert (None, "[DONE]") not in found
    # The client got the text so far, then the SDK raises with the provider's message.
    client = openai_client(
        httpx.Response(200, content=whole, headers={"content-type": "text/event-stream"})
    )
    text = ""
    with pytest.raises(openai.APIError, match=message):
        for chunk in create(client, stream=True):
            text += chunk.choices[0].delta.content or ""
    assert text == ("Let me " if family == "google" else "Let me check.")


def test_nothing_is_sent_after_an_error() -> None:
    stream = translator("anthropic").stream("m", True)
    stream.feed(
        sse(
            ANTHROPIC_START,
            ("error", {"type": "error", "error": {"type": "api_error", "message": "x"}}),
        )
    )
    assert stream.feed(sse(*ANTHROPIC_TEXT)) == b""
    assert stream.finish() == b""


@pytest.mark.parametrize(
    ("family", "cut"),
    [
        ("anthropic", sse(ANTHROPIC_START, *ANTHROPIC_TEXT)),
        ("google", GOOGLE_STREAM.split(b"\r\n\r\n")[0] + b"\r\n\r\n"),
        ("bedrock-converse", BEDROCK_START + BEDROCK_TEXT),
        ("cohere", sse(COHERE_START, *COHERE_TEXT)),
        ("workers-ai", WORKERS_AI_STREAM.split(b"data: [DONE]")[0]),
    ],
)
def test_a_stream_that_stops_before_its_end_is_an_error(family: str, cut: bytes) -> None:
    out, _ = run(family, cut, bytewise=False)
    name, data = events(out)[-1]
    assert name == "error"
    assert data["error"]["code"] == 2005
    assert b"[DONE]" not in out
    client = openai_client(
        httpx.Response(200, content=out, headers={"content-type": "text/event-stream"})
    )
    with pytest.raises(openai.APIError, match="ended before the response was complete"):
        list(create(client, stream=True))


@pytest.mark.parametrize(
    ("family", "garbage"),
    [
        ("anthropic", b"event: message_start\ndata: {not json\n\n"),
        ("google", b"data: [1, 2]\n\n"),
        ("cohere", b'data: {"type": "content-delta", "delta": {"message": []}}\n\n'),
        ("workers-ai", b'data: {"response": "x", "tool_calls": [7]}\n\n'),
    ],
)
def test_unreadable_events_end_the_stream_with_an_error(family: str, garbage: bytes) -> None:
    out, _ = run(family, garbage, bytewise=False)
    assert events(out)[-1][0] == "error"
    assert events(out)[-1][1]["error"]["code"] == 2005


# --- Bedrock's event stream framing ----------------------------------------------


def test_eventstream_decoder_handles_any_split() -> None:
    whole = list(Decoder().feed(BEDROCK_STREAM))
    decoder = Decoder()
    split = [m for i in range(len(BEDROCK_STREAM)) for m in decoder.feed(BEDROCK_STREAM[i : i + 1])]
    assert split == whole and decoder.buffered == 0
    assert [m.headers[":event-type"] for m in whole][:3] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
    ]
    assert orjson.loads(whole[1].payload)["delta"] == {"text": "Let me "}


def test_eventstream_header_types() -> None:
    raw = b"".join(
        [
            b"\x01a\x00",  # true
            b"\x01b\x01",  # false
            b"\x01c\x02\xff",  # byte
            b"\x01d\x03" + struct.pack(">h", -2),
            b"\x01e\x04" + struct.pack(">i", 70000),
            b"\x01f\x05" + struct.pack(">q", 2**40),
            b"\x01g\x06\x00\x02\x00\x01",  # bytes
            b"\x01h\x07\x00\x02hi",  # string
            b"\x01i\x08" + struct.pack(">q", 1_700_000_000_000),  # timestamp
            b"\x01j\x09" + bytes(range(16)),  # uuid
        ]
    )
    prelude = struct.pack(">II", 12 + len(raw) + 4, len(raw))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw
    [decoded] = Decoder().feed(message + struct.pack(">I", zlib.crc32(message)))
    assert decoded.headers == {
        "a": True,
        "b": False,
        "c": -1,
        "d": -2,
        "e": 70000,
        "f": 2**40,
        "g": b"\x00\x01",
        "h": "hi",
        "i": 1_700_000_000_000,
        "j": bytes(range(16)),
    }
    assert decoded.payload == b""


@pytest.mark.parametrize("where", ["prelude", "payload"])
def test_eventstream_checksums_are_verified(where: str) -> None:
    good = converse_event("messageStart", {"role": "assistant"})
    at = 5 if where == "prelude" else len(good) - 10
    bad = good[:at] + bytes([good[at] ^ 0x01]) + good[at + 1 :]
    with pytest.raises(
        EventStreamError, match=f"{'prelude' if where == 'prelude' else 'message'} checksum"
    ):
        list(Decoder().feed(bad))


def test_a_corrupt_bedrock_frame_is_reported_not_raised() -> None:
    second = len(BEDROCK_START) + 20
    corrupt = BEDROCK_STREAM[:second] + b"\x00" + BEDROCK_STREAM[second + 1 :]
    stream = translator("bedrock-converse").stream("m", True)
    out = stream.feed(corrupt) + stream.finish()
    found = events(out)
    assert found[0][1]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert found[-1][0] == "error"
    assert "corrupt" in found[-1][1]["error"]["message"]
    assert stream.feed(BEDROCK_STREAM) == b""


# --- the registry ----------------------------------------------------------------


def test_registry_names_every_family() -> None:
    assert set(FAMILIES) == {"anthropic", "google", "bedrock-converse", "cohere", "workers-ai"}
    for family, module in FAMILIES.items():
        assert translator(family) is module
        for name in ("request", "response", "stream", "error"):
            assert callable(getattr(module, name))
    with pytest.raises(KeyError):
        translator("openai")


def test_anthropic_stream_counts_are_cumulative() -> None:
    stream = translator("anthropic").stream("m", True)
    stream.feed(sse(ANTHROPIC_START, *ANTHROPIC_TEXT))
    later = {"input_tokens": 120, "cache_read_input_tokens": None, "output_tokens": 9}
    stream.feed(sse(("message_delta", {"type": "message_delta", "delta": {}, "usage": later})))
    assert stream.usage is not None
    # A null count keeps the last one: cache reads stay 300, writes 50.
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (470, 9)
    assert (stream.usage.cached_tokens, stream.usage.cache_write_tokens) == (300, 50)


def test_workers_ai_streams_in_chat_completion_shape_too() -> None:
    def delta(**fields: Any) -> tuple[None, dict[str, Any]]:
        return None, {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}

    call = {
        "index": 0,
        "id": "call_w",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    upstream = sse(
        delta(role="assistant", content="Let me "),
        delta(content="check."),
        delta(tool_calls=[call]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]),
        (None, {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        (
            None,
            {
                "choices": [],
                "usage": {"prompt_tokens": 450, "completion_tokens": 20, "total_tokens": 470},
            },
        ),
        (None, "[DONE]"),
    )
    out, seen = run("workers-ai", upstream, bytewise=True)
    final, _ = assembled(events(out))
    [answer] = final.choices
    assert answer.message.content == "Let me check."
    [tool] = answer.message.tool_calls or []
    assert (tool.id, tool.function.name, orjson.loads(tool.function.arguments)) == (
        "call_w",
        *WEATHER_CALL,
    )
    assert answer.finish_reason == "tool_calls"
    assert (seen.prompt_tokens, seen.completion_tokens) == (450, 20)
