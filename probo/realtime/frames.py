"""WebSocket frames (RFC 6455 §5.2) built once and written to many connections.

A server's frames are not masked, so without compression a message is the same bytes
on every connection: the hub frames each message once per room and hands those bytes
to every subscriber's transport.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81
_LENGTH_16 = 126
_LENGTH_64 = 127


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked, uncompressed text frame carrying `payload` (UTF-8)."""
    length = len(payload)
    if length < _LENGTH_16:
        return bytes((_FIN_TEXT, length)) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, _LENGTH_16, length) + payload
    return struct.pack("!BBQ", _FIN_TEXT, _LENGTH_64, length) + payload
