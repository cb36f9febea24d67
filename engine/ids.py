"""Log ids: lowercase UUIDv7, as Cloudflare sends since 2026-10-08."""

from __future__ import annotations

import random
import time
import uuid

# Log ids need uniqueness, not secrecy: a seeded PRNG avoids a getrandom()
# system call per request.
_random = random.Random()


def uuid7() -> str:
    """A time-ordered UUIDv7 (RFC 9562): 48-bit ms timestamp, then random bits."""
    ms = time.time_ns() // 1_000_000
    rand = _random.getrandbits(80)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 68) << 64  # 12 bits rand_a
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # 62 bits rand_b
    return str(uuid.UUID(int=value))
