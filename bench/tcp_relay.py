"""A bare trio TCP relay: the ceiling of any relay written on trio, on this machine.

    python bench/tcp_relay.py PORT UPSTREAM_PORT

Bytes go both ways unchanged (a WebSocket passes through it untouched), two
tasks per connection, 256 KiB reads: the realtime relay's shape without the
WebSocket protocol. The benchmark runs it on the gateway's CPU, so the
gateway's realtime figures can be read against it.
"""

from __future__ import annotations

import contextlib
import sys

import trio

READ = 256 * 1024


async def pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
    try:
        while data := await src.receive_some(READ):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await dst.aclose()


async def main(port: int, upstream: int) -> None:
    async def handle(client: trio.SocketStream) -> None:
        provider = await trio.open_tcp_stream("127.0.0.1", upstream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, provider)
            nursery.start_soon(pump, provider, client)

    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    print(f"tcp relay listening on 127.0.0.1:{port}", flush=True)
    await trio.serve_listeners(handle, listeners)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, int(sys.argv[1]), int(sys.argv[2]))
