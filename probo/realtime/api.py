"""`GET /api/v1/ws`: the WebSocket endpoint (SPEC §8).

Who is asking is settled once, at the handshake: the session cookie or `?token=`. A
cookie-authenticated handshake from a foreign `Origin` is refused (cross-site
WebSocket hijacking); an invalid token leaves the connection anonymous, which can
follow markets but not the `user` channel. Then one loop reads the client's ops while
the connection's sender task drains its bounded queue; whichever ends first ends the
connection. uvicorn sends the protocol pings (every 20 s, see `probo serve`).
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from probo import metrics
from probo.auth import InvalidToken, is_foreign_origin, session_token
from probo.errors import ApiError
from probo.realtime.hub import Hub
from probo.realtime.subscriber import CLOSE_TOO_SLOW, Subscriber
from probo.realtime.types import ClientMessage, Error, Pong, Subscribed, Unsubscribed

CONNECTIONS_MAX = 10_000  # open WebSocket connections per process
MARKETS_PER_CONNECTION_MAX = 100  # market rooms one connection may join
CLIENT_MESSAGE_BYTES_MAX = 1024
TOKEN_LENGTH_MAX = 4096
CLOSE_FORBIDDEN = 4403  # handshake refused: cookie from a foreign origin
CLOSE_BUSY = 1013  # try again later

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ClientMessage).decode
_open_connections = 0


def _user_of(socket: WebSocket) -> tuple[int | None, bool]:
    """(the authenticated user or None, whether the handshake must be refused)."""
    state = socket.app.state
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
        claims = state.auth.tokens.decode(token)
    except InvalidToken:
        return None, False
    if state.auth.revocations.is_revoked(claims.jti):
        return None, False
    if via_cookie and is_foreign_origin(socket, state.settings.allowed_origins):  # type: ignore[arg-type]
        return None, True
    return claims.user_id, False


def _say(subscriber: Subscriber, message: msgspec.Struct) -> None:
    subscriber.offer(_encode(message).decode())


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
        elif subscriber.user_id is None:
            _say(subscriber, Error("unauthorized", "the user channel needs a session", channel))
        else:
            hub.join_user(subscriber)
            _say(subscriber, Subscribed(channel))
        return
    market_id = _market_id(channel)
    if market_id is None:
        _say(subscriber, Error("validation_error", "channel is 'user' or 'market:<id>'", channel))
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
    if channel is None or not channel.startswith("market:"):
        return None
    digits = channel[len("market:") :]
    if not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits) or None


@websocket("/api/v1/ws")
async def feed(socket: WebSocket) -> None:
    global _open_connections
    user_id, refused = _user_of(socket)
    if refused:
        await socket.close(code=CLOSE_FORBIDDEN, reason="cross-site connection refused")
        return
    if _open_connections >= CONNECTIONS_MAX:
        await socket.close(code=CLOSE_BUSY, reason="too many connections")
        return
    hub: Hub = socket.app.state.hub
    await socket.accept()
    _open_connections += 1
    metrics.WS_CONNECTIONS.inc()
    subscriber = Subscriber(user_id)
    sender = subscriber.start(socket)
    receiver = asyncio.create_task(_receive_all(socket, hub, subscriber), name="ws-receiver")
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        _open_connections -= 1
        metrics.WS_CONNECTIONS.dec()
        hub.leave(subscriber)
        for task in (sender, receiver):
            task.cancel()
        await asyncio.gather(sender, receiver, return_exceptions=True)
        if subscriber.kicked:
            metrics.WS_KICKED.inc()
            with contextlib.suppress(Exception):
                await socket.close(code=CLOSE_TOO_SLOW, reason="too slow: reconnect")


async def _receive_all(socket: WebSocket, hub: Hub, subscriber: Subscriber) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            _handle(hub, subscriber, await socket.receive_text())


route_handlers = [feed]
