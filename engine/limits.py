"""Request-head limits, checked before anything else looks at a request.

hypercorn (through h11) refuses a head larger than its own buffer with a bare
error and no envelope; its buffer is set above `max_header_bytes` plus room
for the request line (`HEAD_SLACK`), so a head between the two gets the
gateway's 431 with the envelope, naming the setting to raise.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.config import ServerConfig
from engine.errors import BAD_REQUEST, GatewayError

# Room above max_header_bytes in the HTTP server's own buffer: the request line and CRLFs.
HEAD_SLACK = 8 * 1024


def head_size(headers: Sequence[tuple[bytes, bytes]]) -> int:
    """Bytes the header lines take on the wire ("name: value\\r\\n")."""
    return sum(len(name) + len(value) + 4 for name, value in headers)


def check_head(headers: Sequence[tuple[bytes, bytes]], server: ServerConfig) -> None:
    """Raise 431 when a request has too many header lines or too many header bytes."""
    if len(headers) > server.max_header_count:
        raise GatewayError(
            431,
            BAD_REQUEST,
            f"Too many request headers: {len(headers)} (server.max_header_count "
            f"{server.max_header_count})",
        )
    if (size := head_size(headers)) > server.max_header_bytes:
        raise GatewayError(
            431,
            BAD_REQUEST,
            f"Request headers are too large: {size} bytes (server.max_header_bytes "
            f"{server.max_header_bytes})",
        )
