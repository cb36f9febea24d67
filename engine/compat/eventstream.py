"""AWS event stream framing (`application/vnd.amazon.eventstream`), decoded incrementally.

Each message is a 12-byte prelude (total length, headers length, CRC32 of those
8 bytes, all big-endian), the headers, the payload, and a CRC32 of everything
before it. Both CRCs are checked. A header is a 1-byte name length, the name,
a 1-byte value type and the value.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

PRELUDE = 12
CHECKSUM = 4
# AWS caps a message at 16 MiB of payload and 128 KiB of headers.
MAX_MESSAGE = 16 * 1024 * 1024 + 128 * 1024 + PRELUDE + CHECKSUM

HeaderValue = bool | int | bytes | str

# Value type -> fixed size (None: 2-byte length prefix) and decoder.
_FIXED = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}
_SIZED = {6, 7}  # byte array, string


class EventStreamError(Exception):
    """The bytes are not a valid event stream; nothing after them can be trusted."""


@dataclass(frozen=True, slots=True)
class Message:
    headers: dict[str, HeaderValue]
    payload: bytes


class Decoder:
    """Feed bytes split anywhere; iterate over every message completed so far.

    Messages before a corrupt one are yielded; the corrupt one raises
    EventStreamError.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Message]:
        self._buffer += data
        while (message := self._next()) is not None:
            yield message

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _next(self) -> Message | None:
        buffer = self._buffer
        if len(buffer) < PRELUDE:
            return None
        total, headers_length, prelude_crc = struct.unpack_from(">III", buffer)
        if zlib.crc32(buffer[:8]) != prelude_crc:
            raise EventStreamError("prelude checksum mismatch")
        if not PRELUDE + headers_length + CHECKSUM <= total <= MAX_MESSAGE:
            raise EventStreamError(f"impossible message length {total}")
        if len(buffer) < total:
            return None
        (message_crc,) = struct.unpack_from(">I", buffer, total - CHECKSUM)
        if zlib.crc32(buffer[: total - CHECKSUM]) != message_crc:
            raise EventStreamError("message checksum mismatch")
        headers_end = PRELUDE + headers_length
        message = Message(
            _headers(bytes(buffer[PRELUDE:headers_end])),
            bytes(buffer[headers_end : total - CHECKSUM]),
        )
        del buffer[:total]
        return message


def _headers(raw: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    at = 0
    try:
        while at < len(raw):
            name_length = raw[at]
            name = raw[at + 1 : at + 1 + name_length].decode()
            at += 1 + name_length
            kind = raw[at]
            at += 1
            value: HeaderValue
            if kind in (0, 1):
                value = kind == 0
            elif kind in _FIXED:
                fmt = _FIXED[kind]
                (value,) = struct.unpack_from(fmt, raw, at)
                at += struct.calcsize(fmt)
            elif kind in _SIZED:
                (length,) = struct.unpack_from(">H", raw, at)
                data = raw[at + 2 : at + 2 + length]
                if len(data) != length:
                    raise EventStreamError("truncated header value")
                value = data.decode() if kind == 7 else data
                at += 2 + length
            elif kind == 9:  # uuid
                value = raw[at : at + 16]
                at += 16
            else:
                raise EventStreamError(f"unknown header value type {kind}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError("malformed headers") from exc
    if at != len(raw):
        raise EventStreamError("malformed headers")
    return headers
