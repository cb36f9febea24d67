"""What a translator is: the contract between the compat endpoint and one API family."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from engine.compat.chat import Chat
from engine.compat.openai_shape import Usage
from engine.errors import PROVIDER_FAILED, GatewayError

JSON = ((b"content-type", b"application/json"),)
# What reading a provider body that lacks its documented shape raises
# (orjson.JSONDecodeError is a ValueError).
SHAPE_ERRORS = (AttributeError, KeyError, TypeError, ValueError)


@contextmanager
def translating() -> Iterator[None]:
    """A provider body the gateway cannot read becomes a 502 envelope, not a crash."""
    try:
        yield
    except SHAPE_ERRORS as exc:
        message = "The provider's response could not be translated"
        raise GatewayError(502, PROVIDER_FAILED, message) from exc


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """The provider request a chat completion becomes.

    Attributes:
        path: below the provider's base URL, e.g. `v1/messages`. It is the API's
            canonical path; a provider that mounts the API elsewhere (Vertex,
            Bedrock's Anthropic endpoint) rewrites it.
        body: the provider's JSON body.
        headers: headers the API needs, sent unless the client already set them
            (e.g. `anthropic-version`). Credentials are the provider's business.
        stream: the answer will be a stream (for `Translator.stream`), as the
            client asked with `stream`.
        include_usage: the client asked for `stream_options.include_usage`.
    """

    path: str
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = JSON
    stream: bool = False
    include_usage: bool = False


def upstream_call(
    path: str, body: dict[str, Any], chat: Chat, headers: tuple[tuple[bytes, bytes], ...] = JSON
) -> UpstreamCall:
    return UpstreamCall(path, orjson.dumps(body), headers, chat.stream, chat.include_usage)


class StreamTranslator(Protocol):
    """Upstream stream bytes in, OpenAI SSE bytes out, one complete event at a time.

    `feed` accepts bytes split anywhere and returns the `chat.completion.chunk`
    events completed so far; after the upstream's last event it has also sent the
    usage chunk (when asked for) and `data: [DONE]`. An upstream error becomes an
    `event: error` and ends the output. `finish`, called at the upstream's end of
    stream, returns what is still owed: the end, or an error if the upstream
    stopped before finishing its answer. `usage` holds the counts seen so far.
    """

    usage: Usage | None

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Translator(Protocol):
    """One API family; each family module is one, through its module-level names."""

    def request(self, chat: dict[str, Any], model: str) -> UpstreamCall:
        """Validate an OpenAI body (GatewayError 2019 naming the field) and translate it."""
        ...

    def response(self, body: bytes, model: str) -> bytes:
        """A 2xx provider body -> `chat.completion` JSON."""
        ...

    def stream(self, model: str, include_usage: bool) -> StreamTranslator: ...

    def error(self, status: int, body: bytes) -> bytes:
        """A non-2xx provider body -> OpenAI's error JSON; the status is kept by the caller."""
        ...
