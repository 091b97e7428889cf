"""`GET /api/v1/ws`: the WebSocket endpoint (SPEC §8).

Who is asking is settled at the handshake: the session cookie or `?token=`. A
cookie-authenticated handshake from a foreign `Origin` is refused (cross-site
WebSocket hijacking); an invalid token leaves the connection anonymous, which can
follow markets but not the `user` channel. The session must still be live when the
`user` channel is joined, and the channel is dropped when it ends (users.py). Then one
loop reads the client's ops (at most `CLIENT_OPS_PER_S`, with a burst of
`CLIENT_OPS_BURST`) until the connection ends. uvicorn sends the protocol pings (every
20 s, see `probo serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from loguru import logger

from probo.auth import Claims, InvalidToken, is_foreign_origin, session_token
from probo.infra import metrics
from probo.realtime.frames import text_frame
from probo.realtime.hub import Hub
from probo.realtime.subscriber import (
    CLOSE_TOO_SLOW,
    CLOSE_TOO_SLOW_REASON,
    RAW_SEND_SCOPE_KEY,
    Subscriber,
    direct_socket,
)
from probo.realtime.ticker import TICKER_CHANNEL
from probo.realtime.types import ClientMessage, Error, Pong, Subscribed, Unsubscribed
from probo.services import services_of
from probo.web import ApiError

CONNECTIONS_MAX = 10_000  # open WebSocket connections per process
MARKETS_PER_CONNECTION_MAX = 100  # market rooms one connection may join
CLIENT_MESSAGE_BYTES_MAX = 1024
TOKEN_LENGTH_MAX = 4096
CLOSE_FORBIDDEN = 4403  # handshake refused: cookie from a foreign origin
CLOSE_BUSY = 1013  # try again later
CLIENT_OPS_PER_S = 20.0  # subscribe / unsubscribe / ping, per connection
CLIENT_OPS_BURST = 50.0
_MARKET_CHANNEL = re.compile(r"market:([1-9][0-9]{0,17})")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ClientMessage).decode
_open_connections = 0


def _session_of(socket: WebSocket) -> tuple[Claims | None, bool]:
    """(the session's claims or None, whether the handshake must be refused)."""
    services = services_of(socket.app)
    token: str | None = socket.query_params.get("token")
    via_cookie = False
    if not token:
        try:
            token, via_cookie = session_token(socket)  # type: ignore[arg-type]
        except ApiError:
            return None, False
    if not token or len(token) > TOKEN_LENGTH_MAX:
        return None, False
    try:
        claims = services.auth.tokens.decode(token)
    except InvalidToken:
        return None, False
    if services.auth.revocations.is_revoked(claims.jti):
        return None, False
    if services.auth.revocations.is_suspended(claims.user_id):
        return None, False
    if via_cookie and is_foreign_origin(socket, services.settings.allowed_origins):  # type: ignore[arg-type]
        return None, True
    return claims, False


class _OpBudget:
    """A token bucket of client ops for one connection."""

    __slots__ = ("tokens", "at")

    def __init__(self) -> None:
        self.tokens = CLIENT_OPS_BURST
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(CLIENT_OPS_BURST, self.tokens + (now - self.at) * CLIENT_OPS_PER_S)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _say(subscriber: Subscriber, message: msgspec.Struct) -> None:
    payload = _encode(message)
    subscriber.offer(text_frame(payload), (payload,))


def _handle(hub: Hub, subscriber: Subscriber, raw: str) -> None:
    if len(raw) > CLIENT_MESSAGE_BYTES_MAX:
        _say(subscriber, Error("validation_error", "message too large"))
        return
    try:
        message = _decode(raw)
    except msgspec.ValidationError as exc:
        _say(subscriber, Error("validation_error", str(exc)))
        return
    except msgspec.DecodeError:
        _say(subscriber, Error("validation_error", "messages are JSON objects"))
        return
    if message.op == "ping":
        _say(subscriber, Pong())
        return
    channel = message.channel
    if channel == "user":
        if message.op == "unsubscribe":
            hub.leave_user(subscriber)
            _say(subscriber, Unsubscribed(channel))
        elif not hub.users.session_live(subscriber):
            _say(subscriber, Error("unauthorized", "the user channel needs a session", channel))
        else:
            hub.join_user(subscriber)
            _say(subscriber, Subscribed(channel))
        return
    if channel == TICKER_CHANNEL:
        if message.op == "unsubscribe":
            hub.ticker.leave(subscriber)
            _say(subscriber, Unsubscribed(channel))
        else:
            hub.ticker.join(subscriber)
            _say(subscriber, Subscribed(channel))
        return
    market_id = _market_id(channel)
    if market_id is None:
        _say(
            subscriber,
            Error("validation_error", "channel is 'user', 'ticker' or 'market:<id>'", channel),
        )
    elif message.op == "unsubscribe":
        hub.leave_market(subscriber, market_id)
        _say(subscriber, Unsubscribed(channel))  # type: ignore[arg-type]
    elif (
        market_id not in subscriber.markets
        and len(subscriber.markets) >= MARKETS_PER_CONNECTION_MAX
    ):
        _say(subscriber, Error("validation_error", "too many market subscriptions", channel))
    elif not hub.join_market(subscriber, market_id):
        _say(subscriber, Error("not_found", "market not found", channel))


def _market_id(channel: str | None) -> int | None:
    match = _MARKET_CHANNEL.fullmatch(channel or "")
    return int(match.group(1)) if match else None


@websocket("/api/v1/ws")
async def feed(socket: WebSocket) -> None:
    global _open_connections
    claims, refused = _session_of(socket)
    if refused:
        await socket.close(code=CLOSE_FORBIDDEN, reason="cross-site connection refused")
        return
    if _open_connections >= CONNECTIONS_MAX:
        await socket.close(code=CLOSE_BUSY, reason="too many connections")
        return
    hub = services_of(socket.app).hub
    _open_connections += 1  # before any await: concurrent handshakes count each other
    metrics.WS_CONNECTIONS.inc()
    subscriber: Subscriber | None = None
    sender: asyncio.Task[None] | None = None
    try:
        await socket.accept()
        subscriber = Subscriber(
            claims.user_id if claims else None,
            session_id=claims.jti if claims else None,
            session_expires_at=claims.expires_at if claims else 0.0,
            direct=direct_socket(socket.scope.pop(RAW_SEND_SCOPE_KEY, None)),
        )
        sender = subscriber.start(socket)
        if sender is None:
            await _receive_all(socket, hub, subscriber)
        else:
            receiver = asyncio.create_task(
                _receive_all(socket, hub, subscriber), name="ws-receiver"
            )
            try:
                await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
    finally:
        _open_connections -= 1
        metrics.WS_CONNECTIONS.dec()
        if subscriber is not None:
            hub.leave(subscriber)
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            if subscriber.kicked and not subscriber.direct:  # a direct one was closed by the kick
                with contextlib.suppress(Exception):
                    await socket.close(code=CLOSE_TOO_SLOW, reason=CLOSE_TOO_SLOW_REASON)
        # Litestar's WebSocket and the wrappers of send and receive it keeps refer to each
        # other, and through them to the server's protocol: unlinked, the connection is
        # freed when it ends instead of waiting for a full collection (probo/infra/collector.py).
        socket.send = socket.receive = None  # type: ignore[assignment]


async def _receive_all(socket: WebSocket, hub: Hub, subscriber: Subscriber) -> None:
    budget = _OpBudget()
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            raw = await socket.receive_text()
            if subscriber.kicked:  # its close frame is out: only the end is left
                continue
            if not budget.take():
                _say(subscriber, Error("rate_limited", "too many messages; slow down"))
                continue
            try:
                _handle(hub, subscriber, raw)
            except Exception as exc:  # a bug: answer it, keep the connection
                logger.opt(exception=exc).error("websocket op failed")
                _say(subscriber, Error("internal_error", "the message could not be handled"))


route_handlers = [feed]
