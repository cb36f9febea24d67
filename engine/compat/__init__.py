"""`/compat/chat/completions`: OpenAI chat completions translated to each provider's own API.

A provider module names the API family it speaks (`compat = "anthropic"`);
`translator(family)` returns the module that translates to it. Families:

| family | API |
| --- | --- |
| `anthropic` | Anthropic Messages `v1/messages` (also Bedrock's and Azure's Anthropic endpoints) |
| `google` | Google `generateContent` / `streamGenerateContent` (AI Studio and Vertex) |
| `bedrock-converse` | Bedrock `converse` / `converse-stream` |
| `cohere` | Cohere `v2/chat` |
| `workers-ai` | Workers AI `run/@cf/...` |

OpenAI-compatible providers need no translator: `rewrite_model` is all they take.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from engine.compat import anthropic, bedrock, cohere, google, workers_ai
from engine.compat.base import StreamTranslator, Translator, UpstreamCall
from engine.compat.chat import parse_body, split_model
from engine.compat.openai_shape import Usage
from engine.compat.passthrough import rewrite_model

FAMILIES: Mapping[str, Translator] = MappingProxyType(
    {
        "anthropic": anthropic,
        "google": google,
        "bedrock-converse": bedrock,
        "cohere": cohere,
        "workers-ai": workers_ai,
    }
)


def translator(family: str) -> Translator:
    """The translator for an API family; KeyError names an unknown one (a provider bug)."""
    return FAMILIES[family]


__all__ = [
    "FAMILIES",
    "StreamTranslator",
    "Translator",
    "UpstreamCall",
    "Usage",
    "parse_body",
    "rewrite_model",
    "split_model",
    "translator",
]
