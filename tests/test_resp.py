"""The small Redis client: RESP parsing without sockets, then against a real redis-server."""

from __future__ import annotations

import pytest
import trio

from stores.resp import Address, RedisClient, RedisError, RedisUnavailable, encode, parse
from tests.conftest import RedisServer

REPLIES = [
    (b"+OK\r\n", b"OK"),
    (b"-ERR bad\r\n", "ERR bad"),
    (b":42\r\n", 42),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*2\r\n:1\r\n$4\r\na\r\nb\r\n", [1, b"a\r\nb"]),
    (b"*-1\r\n", None),
    (b"*2\r\n*1\r\n:7\r\n$-1\r\n", [[7], None]),
]


@pytest.mark.parametrize(("wire", "expected"), REPLIES)
def test_parse_any_split(wire: bytes, expected: object) -> None:
    """A reply is recognised only when complete, however the bytes arrive."""
    for cut in range(len(wire)):
        assert parse(bytearray(wire[:cut]))[1] == 0  # incomplete: nothing consumed
    reply, end = parse(bytearray(wire + b"+next\r\n"))
    assert end == len(wire)
    assert (str(reply) if isinstance(reply, RedisError) else reply) == expected


def test_encode_and_urls() -> None:
    assert encode("SET", b"k", 5) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n"
    assert Address.from_url("redis://u:p%40ss@h:7000/3") == Address("h", 7000, 3, "u", "p@ss")
    assert Address.from_url("rediss://h").tls
    assert Address.from_url("unix:///run/redis.sock?db=2").unix_path == "/run/redis.sock"


async def test_commands_and_scripts(redis_server: RedisServer) -> None:
    client = RedisClient(redis_server.url, timeout=2)
    await client.set("k", b"\x00binary\r\n", px=60_000)
    assert await client.get("k") == b"\x00binary\r\n"
    assert await client.get("missing") is None
    assert await client.delete("k", "missing") == 1
    script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await script(keys=["n"], args=[2]) == 2
    await client.execute("SCRIPT", "FLUSH")  # as after a Redis restart: loaded again
    assert await script(keys=["n"], args=[3]) == 5
    with pytest.raises(RedisError, match="unknown command"):
        await client.execute("NO-SUCH-COMMAND")
    assert await client.ping()  # the connection survived the error reply
    await client.aclose()


async def test_outage_and_recovery(redis_server: RedisServer) -> None:
    client = RedisClient(redis_server.url, timeout=2)
    assert await client.ping()
    redis_server.stop()
    with pytest.raises(RedisUnavailable):
        await client.ping()  # the pooled connection is dead: dropped, not reused
    with pytest.raises(RedisUnavailable):
        await client.ping()  # and nothing listens
    redis_server.start()
    assert await client.ping()


async def test_cancelled_command_never_hands_its_reply_to_the_next(
    redis_server: RedisServer,
) -> None:
    client = RedisClient(redis_server.url, timeout=5, max_connections=1)
    await client.set("a", b"A")
    await client.set("b", b"B")
    with trio.move_on_after(0.05):  # cancelled while BLPOP waits for its reply
        await client.execute("BLPOP", "empty-list", 0.5)
    assert await client.get("b") == b"B"  # a fresh connection, not BLPOP's late reply


async def test_timeout_is_unavailable(redis_server: RedisServer) -> None:
    client = RedisClient(redis_server.url, timeout=0.05)
    with pytest.raises(RedisUnavailable, match="no answer"):
        await client.execute("BLPOP", "empty-list", 1)


async def test_password_and_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path)
    server.extra = ["--requirepass", "s3cret"]
    server.start()
    try:
        denied = RedisClient(server.url, timeout=2)
        with pytest.raises(RedisError):
            await denied.get("k")
        url = f"redis://:s3cret@127.0.0.1:{server.port}/4"
        client = RedisClient(url, timeout=2)
        await client.set("k", b"in-db-4")
        assert await client.execute("SELECT", 4) == b"OK"
        other = RedisClient(f"redis://:s3cret@127.0.0.1:{server.port}/0", timeout=2)
        assert await other.get("k") is None
        assert await client.get("k") == b"in-db-4"
    finally:
        server.stop()
