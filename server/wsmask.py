"""Fast WebSocket masking for wsproto, the protocol engine under trio-websocket.

Every frame a WebSocket client sends is XOR-masked (RFC 6455, 5.3): the gateway
unmasks what its clients send and masks what it sends to a provider's realtime
API. wsproto does that XOR in Python, about 140 us per 64 KiB, which made it
most of the CPU a relayed upload costs; the `websockets` package's C
`apply_mask` does the same in about 3 us. `install()` makes wsproto use it.
The bytes on the wire are the same (the masking key still comes from wsproto,
fresh from `os.urandom` for every frame); without the C extension wsproto's own
masker stays.
"""

from __future__ import annotations

from wsproto import frame_protocol

try:
    from websockets.speedups import apply_mask
except ImportError:  # a pure-Python build of websockets: keep wsproto's masker
    apply_mask = None


class FastXorMasker:
    """wsproto's `XorMaskerSimple`, in C: masks successive chunks of one frame's payload."""

    __slots__ = ("_key",)

    def __init__(self, masking_key: bytes | bytearray) -> None:
        self._key = bytes(masking_key)

    def process(self, data: bytes | bytearray) -> bytes:
        if not data:
            return b""
        assert apply_mask is not None
        masked = apply_mask(data, self._key)
        # The next chunk of the same frame continues where this one stopped.
        turn = len(data) % 4
        if turn:
            self._key = self._key[turn:] + self._key[:turn]
        return masked


def install() -> bool:
    """Use the C masker in wsproto for this process; False when it is not available."""
    if apply_mask is None:
        return False
    frame_protocol.XorMaskerSimple = FastXorMasker  # type: ignore[misc,assignment]
    return True
