"""The benchmark's realtime provider: a `websockets` (asyncio) server on loopback.

    python bench/realtime_upstream.py PORT

Paths (the query is ignored):
  /echo     every message back as it came
  /sink     counts binary bytes; a text message is answered with the count so far
  /source   the first text message is a byte count N: N bytes of binary follow in
            64 KiB messages, then the text "done"
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from websockets.asyncio.server import ServerConnection, serve

CHUNK = bytes(64 * 1024)


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path.partition("?")[0] if ws.request else ""
    if path.endswith("/echo"):
        async for message in ws:
            await ws.send(message)
    elif path.endswith("/sink"):
        total = 0
        async for message in ws:
            if isinstance(message, bytes):
                total += len(message)
            else:
                await ws.send(str(total))
    elif path.endswith("/source"):
        async for message in ws:
            left = int(message)
            while left > 0:
                chunk = CHUNK if left >= len(CHUNK) else CHUNK[:left]
                await ws.send(chunk)
                left -= len(chunk)
            await ws.send("done")


async def main(port: int) -> None:
    async with serve(
        handler, "127.0.0.1", port, compression=None, max_size=None, ping_interval=None
    ):
        print(f"realtime upstream listening on 127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1])))
