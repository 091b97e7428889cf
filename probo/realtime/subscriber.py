"""`Subscriber`: one WebSocket connection's bounded send queue and its sender task.

The hub only ever offers a connection an already-encoded message (`offer`, never
awaits), so no connection can slow the engine, the ledger writer or anyone else. A
connection whose queue is full has fallen behind: it is kicked (its sender stops and
the socket is closed with `CLOSE_TOO_SLOW`); the client reconnects and re-snapshots.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

SEND_QUEUE_MAX = 512  # messages waiting for one connection before it counts as too slow
CLOSE_TOO_SLOW = 4008  # close code of a kicked consumer


class TextSocket(Protocol):
    async def send_text(self, data: str) -> None: ...


class Subscriber:
    __slots__ = ("queue", "user_id", "markets", "kicked", "_sender")

    def __init__(self, user_id: int | None) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(SEND_QUEUE_MAX)
        self.user_id = user_id  # authenticated user, or None
        self.markets: set[int] = set()  # market rooms joined
        self.kicked = False
        self._sender: asyncio.Task[None] | None = None

    def offer(self, text: str) -> bool:
        """Queue `text`; False (and the connection kicked) when it has fallen behind."""
        if self.kicked:
            return False
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.kick()
            return False
        return True

    def kick(self) -> None:
        self.kicked = True
        if self._sender is not None:
            self._sender.cancel()

    def start(self, socket: TextSocket) -> asyncio.Task[None]:
        self._sender = asyncio.create_task(self._send_all(socket), name="ws-sender")
        return self._sender

    async def _send_all(self, socket: TextSocket) -> None:
        queue = self.queue
        while True:
            text = await queue.get()
            await socket.send_text(text)
