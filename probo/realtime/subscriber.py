"""`Subscriber`: one WebSocket connection as the hub sees it, and its bounded send queue.

The hub only ever offers a connection messages that are already encoded (`offer`,
never awaits), so no connection can slow the engine, the ledger writer or anyone else.

Under `probo serve` (uvicorn's sans-I/O WebSocket protocol, no compression) the
connection writes ready-made frames straight to its transport: one C call per
connection per flush, the same bytes for the whole room. Its send queue is the
transport's write buffer, bounded by `SEND_BUFFER_BYTES_MAX`. Anywhere else (another
ASGI server, or a connection that negotiated compression) it falls back to a queue of
`SEND_QUEUE_MAX` messages drained by a sender task through the ASGI interface.

A connection whose queue is full has fallen behind: it is kicked (closed with
`CLOSE_TOO_SLOW`); the client reconnects and re-snapshots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from probo.infra import metrics

SEND_QUEUE_MAX = 512  # messages waiting for one connection before it counts as too slow
SEND_BUFFER_BYTES_MAX = 2 * 1024 * 1024  # bytes unsent to one connection, likewise
CLOSE_TOO_SLOW = 4008  # close code of a kicked consumer
CLOSE_TOO_SLOW_REASON = "too slow: reconnect"
KICKED_ABORT_S = 5.0
# Where the app keeps the server's own ASGI `send` of a WebSocket (probo/app.py).
RAW_SEND_SCOPE_KEY = "probo.raw_send"  # a kicked peer that reads nothing more is cut off after this


class TextSocket(Protocol):
    async def send_text(self, data: str) -> None: ...


_TRANSPORT_METHODS = ("write", "abort", "is_closing", "get_write_buffer_size")


class DirectSocket:
    """The server's own WebSocket protocol behind a connection, written to directly:
    frames go to its transport, and a close goes through its sans-I/O state so the
    server's later replies (to the peer's close, its pings) see the connection closing."""

    __slots__ = ("protocol", "transport")

    def __init__(self, protocol: Any, transport: asyncio.Transport) -> None:
        self.protocol = protocol
        self.transport = transport

    def close(self, code: int, reason: str) -> None:
        """Send a close frame after whatever is queued, and cut the connection
        `KICKED_ABORT_S` later unless the peer has answered it by then."""
        protocol = self.protocol
        if self.transport.is_closing() or protocol.close_sent:
            return
        try:
            protocol.conn.send_close(code, reason)
        except Exception:  # the protocol is past open after all: just cut it
            self.transport.abort()
            return
        self.transport.write(b"".join(protocol.conn.data_to_send()))
        # As when the app closes: the server now discards what the peer still sends (no
        # reset from unread input), and ends the connection when the peer's close frame
        # comes back, or when this timer fires.
        protocol.close_sent = True
        protocol.close_timer = asyncio.get_running_loop().call_later(
            KICKED_ABORT_S, self.transport.abort
        )


def direct_socket(send: Any) -> DirectSocket | None:
    """The protocol under an ASGI `send` when frames may be written to it directly:
    uvicorn's sans-I/O WebSocket protocol, handshake done, no extension (compression)
    negotiated. None otherwise (the queued path is used)."""
    protocol = getattr(send, "__self__", None)
    transport = getattr(protocol, "transport", None)
    connection = getattr(protocol, "conn", None)
    if (
        # uvloop's transports are not registered as asyncio.Transport: ask for the methods.
        not all(hasattr(transport, name) for name in _TRANSPORT_METHODS)
        or connection is None
        or not hasattr(connection, "send_close")
        or not hasattr(connection, "data_to_send")
        or getattr(protocol, "close_sent", None) is not False
        or getattr(protocol, "handshake_complete", False) is not True
        or getattr(connection, "extensions", None) != []
    ):
        return None
    return DirectSocket(protocol, transport)  # type: ignore[arg-type]


class Subscriber:
    __slots__ = (
        "user_id",
        "session_id",
        "session_expires_at",
        "markets",
        "kicked",
        "_direct",
        "_transport",
        "_queue",
        "_sender",
    )

    def __init__(
        self,
        user_id: int | None,
        *,
        session_id: str | None = None,
        session_expires_at: float = 0.0,
        direct: DirectSocket | None = None,
    ) -> None:
        self.user_id = user_id  # authenticated user, or None
        self.session_id = session_id  # the session token's jti, to notice a logout
        self.session_expires_at = session_expires_at  # unix seconds
        self.markets: set[int] = set()  # market rooms joined
        self.kicked = False
        self._direct = direct
        self._transport = direct.transport if direct is not None else None
        self._queue: asyncio.Queue[bytes] | None = (
            None if direct is not None else asyncio.Queue(SEND_QUEUE_MAX)
        )
        self._sender: asyncio.Task[None] | None = None

    @property
    def direct(self) -> bool:
        return self._transport is not None

    def offer(self, frames: bytes, payloads: Sequence[bytes]) -> bool:
        """Send `payloads` (JSON messages), framed together as `frames`.

        False, and the connection kicked, when it has fallen behind; False also once it
        is closing.
        """
        if self.kicked:
            return False
        transport = self._transport
        if transport is not None:
            if transport.is_closing():
                return False
            if transport.get_write_buffer_size() + len(frames) > SEND_BUFFER_BYTES_MAX:
                self.kick()
                return False
            transport.write(frames)
            return True
        queue = self._queue
        assert queue is not None
        if queue.qsize() + len(payloads) > SEND_QUEUE_MAX:
            self.kick()
            return False
        for payload in payloads:
            queue.put_nowait(payload)
        return True

    def kick(self) -> None:
        """Close the connection as too slow, whatever it has not read yet."""
        if self.kicked:
            return
        self.kicked = True
        metrics.WS_KICKED.inc()
        if self._direct is not None:
            self._direct.close(CLOSE_TOO_SLOW, CLOSE_TOO_SLOW_REASON)
        elif self._sender is not None:
            self._sender.cancel()

    def start(self, socket: TextSocket) -> asyncio.Task[None] | None:
        """The sender task of a queued connection; None for a direct one."""
        if self._queue is None:
            return None
        self._sender = asyncio.create_task(self._send_all(socket), name="ws-sender")
        return self._sender

    async def _send_all(self, socket: TextSocket) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            payload = await queue.get()
            await socket.send_text(payload.decode())
