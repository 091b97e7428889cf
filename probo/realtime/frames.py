"""WebSocket frames (RFC 6455 §5.2) built once and written to many connections.

A server's frames are not masked, so without compression a message is the same bytes
on every connection: the hub frames each message once per room and hands those bytes
to every subscriber's transport.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81
_FIN_CLOSE = 0x88
_LENGTH_16 = 126
_LENGTH_64 = 127
CLOSE_REASON_BYTES_MAX = 123  # a control frame's payload is at most 125 bytes


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked, uncompressed text frame carrying `payload` (UTF-8)."""
    length = len(payload)
    if length < _LENGTH_16:
        return bytes((_FIN_TEXT, length)) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, _LENGTH_16, length) + payload
    return struct.pack("!BBQ", _FIN_TEXT, _LENGTH_64, length) + payload


def close_frame(code: int, reason: str) -> bytes:
    """A close frame with `code` and `reason` (cut to fit a control frame)."""
    body = struct.pack("!H", code) + reason.encode()[:CLOSE_REASON_BYTES_MAX]
    return bytes((_FIN_CLOSE, len(body))) + body
