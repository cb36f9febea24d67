"""What a committed response is to the transports, and one held in memory.

The transports relay anything with this shape: a live upstream response
(`server.upstream.Response`) or a `StoredResponse` a feature answers with
(a cache hit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class ResponseBody(Protocol):
    status: int
    headers: Sequence[tuple[bytes, bytes]]  # lower-cased names

    def header(self, name: bytes) -> bytes | None: ...

    @property
    def complete(self) -> bool:
        """True once the whole body has been received."""
        ...

    async def receive_some(self) -> bytes:
        """Body bytes that have arrived; b"" at the end."""
        ...

    async def read_all(self, limit: int) -> bytes: ...

    async def aclose(self) -> None: ...


class StoredResponse:
    """A response whose body is already in memory, handed out in its stored pieces.

    Keeping the pieces (rather than one joined body) lets a stored stream be
    replayed event by event.
    """

    __slots__ = ("_pieces", "headers", "status")

    def __init__(
        self, status: int, headers: Sequence[tuple[bytes, bytes]], pieces: Sequence[bytes]
    ) -> None:
        self.status = status
        self.headers = headers
        self._pieces = list(reversed(pieces))

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def complete(self) -> bool:
        return not self._pieces

    async def receive_some(self) -> bytes:
        return self._pieces.pop() if self._pieces else b""

    async def read_all(self, limit: int) -> bytes:
        body = b"".join(reversed(self._pieces))
        self._pieces.clear()
        return body[:limit]

    async def aclose(self) -> None:
        self._pieces.clear()
