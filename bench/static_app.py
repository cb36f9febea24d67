"""hypercorn alone: a static ASGI app served the way the gateway serves its app.

The benchmark measures it beside the gateway, so the report can tell the HTTP
server's own ceiling on this machine apart from what the proxy path adds.

    python bench/static_app.py PORT
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

BODY = (
    b'{"id":"chatcmpl-fake","object":"chat.completion","created":0,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the fake '
    b'upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":7,'
    b'"total_tokens":16}}'
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/healthz" or scope["type"] != "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{int(sys.argv[1])}"]
    config.accesslog = None
    config.include_server_header = False
    trio.run(partial(serve, app, config))


if __name__ == "__main__":
    main()
