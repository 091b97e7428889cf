"""The WebSocket feeds (SPEC §8, §10) with real WebSocket clients against a real server:
a book rebuilt from snapshot + gap-free deltas equals REST `/orderbook`; a `trade`
message for every fill, each already in Postgres when it arrives; `market` messages;
the user channel's auth and privacy; a stalled consumer dropped while others go on."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn
from litestar import Litestar
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from probo.cli import SERVER_OPTIONS
from probo.realtime import subscriber as subscriber_module
from probo.services import services_of
from tests.conftest import free_port, login
from tests.trading import Trader, create_market, funded_trader

WAIT_S = 10.0


class Feed:
    """A WebSocket client that keeps every message it receives."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.messages: list[dict] = []
        self.closed: ConnectionClosed | None = None
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.on_message: Callable[[dict], None] | None = None

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                message = json.loads(raw)
                if self.on_message is not None:
                    self.on_message(message)
                self.messages.append(message)
                self._arrived.set()
        except ConnectionClosed as exc:
            self.closed = exc
            self._arrived.set()

    async def send(self, **message: object) -> None:
        await self.connection.send(json.dumps(message))

    async def wait_for(self, matches: Callable[[dict], bool], start: int = 0) -> dict:
        """The first message from index `start` on that `matches`."""
        deadline = time.monotonic() + WAIT_S
        while True:
            for message in self.messages[start:]:
                if matches(message):
                    return message
            remaining = deadline - time.monotonic()
            assert remaining > 0 and self.closed is None, (
                f"no such message; got {self.messages[-5:]}, closed: {self.closed}"
            )
            self._arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]


def ws_url(client: httpx.AsyncClient, query: str = "") -> str:
    return f"ws://{client.base_url.host}:{client.base_url.port}/api/v1/ws{query}"


@asynccontextmanager
async def feed(client: httpx.AsyncClient, query: str = "", **kwargs: object) -> AsyncIterator[Feed]:
    async with connect(ws_url(client, query), **kwargs) as connection:  # type: ignore[arg-type]
        reader = Feed(connection)
        try:
            yield reader
        finally:
            reader._reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader._reader


class BookReplica:
    """A book rebuilt as a client would: the snapshot, then each delta in seq order."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.levels: dict[str, dict[int, int]] = {"yes": {}, "no": {}}
        self.gaps: list[tuple[int, int]] = []

    def apply(self, message: dict) -> None:
        if message["type"] == "snapshot":
            self.seq = message["seq"]
            for outcome in ("yes", "no"):
                self.levels[outcome] = {
                    level["price"]: level["quantity"] for level in message["book"][outcome]
                }
        elif message["type"] == "book":
            assert self.seq is not None, "a delta before the snapshot"
            if message["seq"] != self.seq + 1:
                self.gaps.append((self.seq, message["seq"]))
            self.seq = message["seq"]
            assert message["changes"], "an empty delta"
            for change in message["changes"]:
                levels = self.levels[change["outcome"]]
                if change["quantity"]:
                    levels[change["price"]] = change["quantity"]
                else:
                    levels.pop(change["price"], None)

    def book(self) -> dict[str, list[dict]]:
        return {
            outcome: [
                {"price": p, "quantity": q}
                for p, q in sorted(self.levels[outcome].items(), reverse=True)
            ]
            for outcome in ("yes", "no")
        }


async def random_orders(traders: list[Trader], market: int, count: int, seed: int) -> list[dict]:
    """About a third crossing, some cancels; every order answered 201 or 200."""
    rng = random.Random(seed)
    placed: list[tuple[Trader, dict]] = []
    for _ in range(count):
        trader = rng.choice(traders)
        if placed and rng.random() < 0.15:
            owner, order = rng.choice(placed)
            await owner.client.delete(f"/api/v1/orders/{order['id']}", headers=owner.headers)
            continue
        outcome = rng.choice(("yes", "no"))
        price = 50 * rng.randint(7, 13)
        response = await trader.order(market, outcome, "buy", rng.randint(1, 5), price)
        assert response.status_code == 201, response.text
        placed.append((trader, response.json()))
    return [order for _, order in placed]


async def market_trades(client: httpx.AsyncClient, market: int) -> dict[int, dict]:
    response = await client.get(f"/api/v1/markets/{market}/trades", params={"limit": 200})
    return {t["id"]: t for t in response.json()["items"]}


async def test_snapshot_plus_deltas_equal_rest_and_every_fill_has_a_trade_message(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path, db: asyncpg.Pool
) -> None:
    market = (await create_market(client, admin))["id"]
    traders = [await funded_trader(client, outbox_path, deposit=100_000) for _ in range(4)]
    await random_orders(traders, market, 15, seed=1)  # a book before anyone watches
    before = await market_trades(client, market)
    replica = BookReplica()
    missing_in_postgres: list[int] = []
    checks: list[asyncio.Task] = []

    async def check_committed(trade_ids: list[int]) -> None:
        found = await db.fetch("SELECT id FROM trades WHERE id = ANY($1::bigint[])", trade_ids)
        missing_in_postgres.extend(set(trade_ids) - {r["id"] for r in found})

    def on_message(message: dict) -> None:
        replica.apply(message)
        if message["type"] == "trade":
            ids = [t["id"] for t in message["trades"]]
            checks.append(asyncio.create_task(check_committed(ids)))

    async with feed(client) as live:
        live.on_message = on_message
        await live.send(op="subscribe", channel=f"market:{market}")
        snapshot = await live.wait_for(lambda m: m["type"] == "snapshot")
        assert snapshot["channel"] == f"market:{market}"
        rest_then = (await client.get(f"/api/v1/markets/{market}/orderbook")).json()
        assert snapshot["book"] == rest_then
        assert snapshot["book"]["seq"] == snapshot["seq"]

        await random_orders(traders, market, 60, seed=2)
        rest = (await client.get(f"/api/v1/markets/{market}/orderbook")).json()
        await live.wait_for(lambda m: m["type"] == "book" and m["seq"] == rest["seq"])
        assert replica.gaps == []
        assert replica.book() == {"yes": rest["yes"], "no": rest["no"]}
        assert replica.seq == rest["seq"] > snapshot["seq"]

        trades = await market_trades(client, market)
        expected = sorted(set(trades) - set(before))
        assert expected, "the flow did not cross: no trades to see"
        await live.wait_for(
            lambda m: m["type"] == "trade" and m["trades"][-1]["id"] == expected[-1]
        )
    await asyncio.gather(*checks)
    assert missing_in_postgres == []  # nothing is told before it commits
    sent = [t for m in live.of_type("trade") for t in m["trades"]]
    assert [t["id"] for t in sent] == expected  # every fill once, in commit order
    for t in sent:
        assert t == trades[t["id"]]  # the REST shape, the same values


async def test_market_status_changes_are_sent_in_order(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    market = (await create_market(client, admin))["id"]
    trader = await funded_trader(client, outbox_path)
    await trader.placed(market, "yes", "buy", 2, 400)
    async with feed(client) as live:
        await live.send(op="subscribe", channel=f"market:{market}")
        await live.wait_for(lambda m: m["type"] == "snapshot")
        for action in ("pause", "resume", "close"):
            response = await client.post(f"/api/v1/admin/markets/{market}/{action}", headers=admin)
            assert response.status_code == 200
        resolved = await client.post(
            f"/api/v1/admin/markets/{market}/resolve", json={"outcome": "no"}, headers=admin
        )
        assert resolved.status_code == 200
        await live.wait_for(lambda m: m["type"] == "market" and m["status"] == "resolved")
        statuses = [(m["status"], m["outcome"]) for m in live.of_type("market")]
        assert statuses == [
            ("paused", None),
            ("open", None),
            ("closed", None),
            ("resolved", "no"),
        ]
        # The close took the resting bid off the book.
        deltas = live.of_type("book")
        assert deltas[-1]["changes"] == [{"outcome": "yes", "price": 400, "quantity": 0}]


async def test_user_channel_needs_auth_and_shows_only_its_user(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    market = (await create_market(client, admin))["id"]
    alice = await funded_trader(client, outbox_path, deposit=10_000)
    bob = await funded_trader(client, outbox_path, deposit=10_000)
    async with feed(client) as anonymous:
        await anonymous.send(op="subscribe", channel="user")
        refused = await anonymous.wait_for(lambda m: m["type"] == "error")
        assert (refused["code"], refused.get("channel")) == ("unauthorized", "user")
        await anonymous.send(op="ping")  # the connection stays open
        await anonymous.wait_for(lambda m: m["type"] == "pong")
    async with feed(client, "?token=not-a-token") as bad:
        await bad.send(op="subscribe", channel="user")
        assert (await bad.wait_for(lambda m: m["type"] == "error"))["code"] == "unauthorized"

    token = alice.headers["Authorization"].removeprefix("Bearer ")
    async with feed(client, f"?token={token}") as mine:
        await mine.send(op="subscribe", channel="user")
        assert await mine.wait_for(lambda m: m["type"] == "subscribed") == {
            "type": "subscribed",
            "channel": "user",
        }
        bid = await alice.placed(market, "yes", "buy", 4, 600)  # locks 2400
        await mine.wait_for(lambda m: m["type"] == "order" and m["order"]["id"] == bid["id"])
        balance = await mine.wait_for(lambda m: m["type"] == "balance")
        wallet = await alice.wallet()
        assert (balance["balance"], balance["locked"], balance["available"]) == (
            wallet["balance"],
            2400,
            wallet["balance"] - 2400,
        )
        bobs = await bob.placed(market, "no", "buy", 3, 400)  # mints 3 with alice's bid
        await bob.placed(market, "no", "buy", 1, 100)  # bob's own, never alice's business
        fill = await mine.wait_for(lambda m: m["type"] == "fill")
        trade_id = bobs["fills"][0]["trade_id"]
        assert fill["fill"] == {
            "order_id": bid["id"],
            "trade_id": trade_id,
            "price": 600,
            "quantity": 3,
            "kind": "mint",
        }
        update = await mine.wait_for(
            lambda m: m["type"] == "order" and m["order"]["filled_quantity"] == 3
        )
        rest = (await client.get(f"/api/v1/orders/{bid['id']}", headers=alice.headers)).json()
        assert update["order"] == rest
        after = await mine.wait_for(
            lambda m: m["type"] == "balance" and m["locked"] == 600, start=0
        )
        assert after["balance"] == wallet["balance"] - 1800
        canceled = await client.delete(f"/api/v1/orders/{bid['id']}", headers=alice.headers)
        assert canceled.status_code == 200
        await mine.wait_for(lambda m: m["type"] == "order" and m["order"]["status"] == "canceled")
        orders = {m["order"]["id"] for m in mine.of_type("order")}
        assert orders == {bid["id"]}  # never bob's
        assert all(m["fill"]["order_id"] == bid["id"] for m in mine.of_type("fill"))


async def test_cookie_sessions_and_foreign_origins(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    token, _ = await login(client, outbox_path)
    cookie = {"Cookie": f"probo_session={token}"}
    async with feed(client, additional_headers=cookie) as same_site:
        await same_site.send(op="subscribe", channel="user")
        assert (await same_site.wait_for(lambda m: m["type"] != "pong"))["type"] == "subscribed"
    foreign = {**cookie, "Origin": "https://evil.example"}
    with pytest.raises(InvalidStatus) as refused:
        async with feed(client, additional_headers=foreign):
            pass
    assert refused.value.response.status_code == 403
    # Without the cookie, a foreign page may still read public market data.
    async with feed(client, additional_headers={"Origin": "https://elsewhere.example"}) as public:
        await public.send(op="ping")
        await public.wait_for(lambda m: m["type"] == "pong")


async def test_bad_messages_get_errors_and_the_connection_stays(
    client: httpx.AsyncClient,
) -> None:
    async with feed(client) as live:
        for bad in ("not json", '{"op": "dance"}', '{"op": "subscribe", "channel": "market:x"}'):
            await live.connection.send(bad)
            error = await live.wait_for(lambda m: m["type"] == "error", start=len(live.messages))
            assert error["code"] == "validation_error"
        await live.send(op="subscribe", channel="market:987654321")
        missing = await live.wait_for(lambda m: m.get("code") == "not_found")
        assert missing["channel"] == "market:987654321"
        await live.send(op="ping")
        await live.wait_for(lambda m: m["type"] == "pong")


def _stalled_socket(client: httpx.AsyncClient, path: str) -> socket.socket:
    """A WebSocket handshake on a socket with a tiny receive buffer, never read again."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((client.base_url.host, client.base_url.port))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {client.base_url.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += raw.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return raw


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():  # noqa: ASYNC110 (polling the hub's rooms)
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _text_frame(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    return struct.pack("!BB4s", 0x81, 0x80 | len(payload), b"\0\0\0\0") + payload


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each complete unmasked server frame in `data`."""
    frames = []
    while len(data) >= 2:
        length, offset = data[1] & 0x7F, 2
        if length == 126:
            length, offset = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            length, offset = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < offset + length:
            break
        frames.append((data[0] & 0x0F, data[offset : offset + length]))
        data = data[offset + length :]
    return frames


def _read_to_close(raw: socket.socket) -> bytes:
    """Everything up to the server's close frame; answer it as a client does, then the
    server ends the connection."""
    raw.settimeout(WAIT_S)
    data = b""
    while not any(opcode == 0x8 for opcode, _ in _frames(data)):
        chunk = raw.recv(65536)
        assert chunk, "the connection ended without a close frame"
        data += chunk
    raw.sendall(struct.pack("!BB4s", 0x88, 0x82, b"\0\0\0\0") + struct.pack("!H", 1000))
    while raw.recv(65536):
        pass
    return data


async def test_a_stalled_consumer_is_dropped_and_others_keep_receiving(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    outbox_path: Path,
    app: Litestar,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    market = (await create_market(client, admin, tick=1))["id"]
    makers = [await funded_trader(client, outbox_path, deposit=100_000) for _ in range(5)]
    for n, price in enumerate(range(100, 400, 2)):  # a deep book: large snapshots
        await makers[n % 5].placed(market, "yes", "buy", 1, price)
    maker = makers[0]
    hub = services_of(app).hub
    # A small bound, so that the test fills it quickly; the rule is the same.
    monkeypatch.setattr(subscriber_module, "SEND_BUFFER_BYTES_MAX", 64 * 1024)
    async with feed(client) as healthy:
        await healthy.send(op="subscribe", channel=f"market:{market}")
        await healthy.wait_for(lambda m: m["type"] == "snapshot")
        stalled = await asyncio.to_thread(_stalled_socket, client, "/api/v1/ws")
        try:
            subscribe = _text_frame(json.dumps({"op": "subscribe", "channel": f"market:{market}"}))
            await asyncio.to_thread(stalled.sendall, subscribe)
            await _until(lambda: len(hub._rooms.get(market, ())) == 2)  # it joined
            room = hub._rooms[market]
            assert all(s.direct for s in room), "frames are not written to the transports"
            # Keep the kernel from buffering much for it, so the server's bound is reached.
            for subscriber in room:
                transport = subscriber._transport
                if transport.get_extra_info("peername")[1] == stalled.getsockname()[1]:
                    sock = transport.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            # While it sits in the room unread, the others still get every change.
            order = await maker.placed(market, "yes", "buy", 1, 451)
            await healthy.wait_for(
                lambda m: (
                    m["type"] == "book"
                    and {"outcome": "yes", "price": 451, "quantity": 1} in m["changes"]
                )
            )
            # Deltas pile up unread on the stalled connection until it is kicked.
            kicked_before = _metric(await client.get("/metrics"), "probo_ws_kicked_total")
            price = 101
            while len(hub._rooms.get(market, ())) == 2:
                assert price < 400, "the stalled consumer was never dropped"
                await makers[price % 5].placed(market, "yes", "buy", 1, price)
                await asyncio.to_thread(stalled.sendall, subscribe * 2)  # and snapshots
                price += 2
            assert len(hub._rooms[market]) == 1, "the stalled consumer is still in the room"
            kicked = _metric(await client.get("/metrics"), "probo_ws_kicked_total")
            assert kicked == kicked_before + 1
            started = time.monotonic()
            order = await maker.placed(market, "yes", "buy", 1, 450)
            assert time.monotonic() - started < WAIT_S
            new_level = await healthy.wait_for(
                lambda m: (
                    m["type"] == "book"
                    and {"outcome": "yes", "price": 450, "quantity": 1} in m["changes"]
                )
            )
            assert new_level["seq"] > 0 and order["status"] == "open"
            # What it had not read is still delivered, then a close frame saying why.
            frames = _frames(await asyncio.to_thread(_read_to_close, stalled))
            assert frames[-1][0] == 0x8, frames[-1]
            assert struct.unpack("!H", frames[-1][1][:2])[0] == 4008
        finally:
            stalled.close()


def _metric(response: httpx.Response, name: str) -> float:
    for line in response.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def test_a_cancel_all_of_nothing_while_a_user_feed_is_open_leaves_markets_trading(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    market = (await create_market(client, admin))["id"]
    alice = await funded_trader(client, outbox_path, deposit=10_000)
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    async with feed(client, f"?token={token}") as mine:
        await mine.send(op="subscribe", channel="user")
        await mine.wait_for(lambda m: m["type"] == "subscribed")
        # No open orders anywhere: every market's engine task gets a cancel-all of nothing.
        nothing = await client.delete("/api/v1/orders", headers=alice.headers)
        assert nothing.status_code == 200, nothing.text
        assert nothing.json()["canceled"] == []
        bid = await alice.placed(market, "yes", "buy", 2, 500)
        assert bid["status"] == "open"
        await mine.wait_for(lambda m: m["type"] == "order" and m["order"]["id"] == bid["id"])


async def test_orders_placed_before_subscribing_are_followed_exactly(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    market = (await create_market(client, admin))["id"]
    alice = await funded_trader(client, outbox_path, deposit=10_000)
    bob = await funded_trader(client, outbox_path, deposit=10_000)
    early = await alice.placed(market, "yes", "buy", 5, 600)  # before anyone watches
    async with (
        feed(client, f"?token={alice.token}") as alices,
        feed(client, f"?token={bob.token}") as bobs,
    ):
        for live in (alices, bobs):
            await live.send(op="subscribe", channel="user")
            await live.wait_for(lambda m: m["type"] == "subscribed")
        await bob.placed(market, "no", "buy", 2, 400)  # mints 2 against the early bid
        partly = await alices.wait_for(lambda m: m["type"] == "order")
        assert (
            partly["order"]
            == (await client.get(f"/api/v1/orders/{early['id']}", headers=alice.headers)).json()
        )
        assert (partly["order"]["status"], partly["order"]["filled_quantity"]) == ("open", 2)
        late = await alice.placed(market, "yes", "buy", 1, 550)
        await bob.placed(market, "no", "buy", 3, 400)  # fills the rest of the early bid
        await bob.placed(market, "no", "buy", 1, 450)  # fills the late bid
        await alices.wait_for(
            lambda m: m["type"] == "order" and m["order"]["id"] == late["id"]
            and m["order"]["status"] == "filled"
        )  # fmt: skip
        states = [
            (m["order"]["id"], m["order"]["status"], m["order"]["filled_quantity"])
            for m in alices.of_type("order")
        ]
        # Every committed change, once, in commit order.
        assert states == [
            (early["id"], "open", 2),
            (late["id"], "open", 0),
            (early["id"], "filled", 5),
            (late["id"], "filled", 1),
        ]
        for order_id in (early["id"], late["id"]):
            last = [m["order"] for m in alices.of_type("order") if m["order"]["id"] == order_id][-1]
            rest = await client.get(f"/api/v1/orders/{order_id}", headers=alice.headers)
            assert last == rest.json()
        # Each side sees its own balances only, and the last one is the wallet's.
        await bobs.wait_for(lambda m: m["type"] == "fill" and m["fill"]["quantity"] == 1)
        for trader, live in ((alice, alices), (bob, bobs)):
            wallet = await trader.wallet()
            last = await live.wait_for(
                lambda m, w=wallet: m["type"] == "balance" and m["balance"] == w["balance"]
            )
            assert (last["locked"], last["available"]) == (wallet["locked"], wallet["available"])
        alice_orders = {m["order"]["id"] for m in alices.of_type("order")}
        bob_orders = {m["order"]["id"] for m in bobs.of_type("order")}
        assert alice_orders == {early["id"], late["id"]} and not alice_orders & bob_orders
        assert {m["fill"]["order_id"] for m in bobs.of_type("fill")} == bob_orders


async def test_a_user_channel_ends_with_its_session_and_unsubscribe_stops_it(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    market = (await create_market(client, admin))["id"]
    alice = await funded_trader(client, outbox_path, deposit=10_000)
    async with feed(client, f"?token={alice.token}") as live:
        await live.send(op="subscribe", channel="user")
        await live.send(op="subscribe", channel=f"market:{market}")
        await live.wait_for(lambda m: m["type"] == "snapshot")
        await alice.placed(market, "yes", "buy", 1, 500)
        await live.wait_for(lambda m: m["type"] == "order")
        logout = await client.post("/api/v1/auth/logout", headers=alice.headers)
        assert logout.status_code in (200, 204), logout.text
        ended = await live.wait_for(lambda m: m["type"] == "error")
        assert (ended["code"], ended["channel"]) == ("unauthorized", "user")
        await live.send(op="subscribe", channel="user")  # the token is no good any more
        refused = await live.wait_for(lambda m: m["type"] == "error", start=len(live.messages))
        assert refused["code"] == "unauthorized"
        # The market room goes on: a public feed needs no session.
        bob = await funded_trader(client, outbox_path, deposit=10_000)
        await bob.placed(market, "no", "buy", 1, 300)
        await live.wait_for(
            lambda m: (
                m["type"] == "book"
                and {"outcome": "no", "price": 300, "quantity": 1} in m["changes"]
            )
        )
        assert len(live.of_type("order")) == 1  # nothing of alice's after the logout

    carol = await funded_trader(client, outbox_path, deposit=10_000)
    async with feed(client, f"?token={carol.token}") as live:
        await live.send(op="subscribe", channel="user")
        await live.wait_for(lambda m: m["type"] == "subscribed")
        await live.send(op="unsubscribe", channel="user")
        await live.wait_for(lambda m: m["type"] == "unsubscribed")
        await live.send(op="subscribe", channel=f"market:{market}")
        await live.wait_for(lambda m: m["type"] == "snapshot")
        await carol.placed(market, "yes", "buy", 1, 350)
        await live.wait_for(
            lambda m: (
                m["type"] == "book"
                and {"outcome": "yes", "price": 350, "quantity": 1} in m["changes"]
            )
        )
        assert live.of_type("order") == [] and live.of_type("balance") == []


async def test_odd_channels_and_floods_of_ops_get_errors_and_the_connection_stays(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    market = (await create_market(client, admin))["id"]
    async with feed(client) as live:
        for channel in ("market:\u00b2", "market:\u0661\u0662", f"market:0{market}", "market:-1"):
            await live.send(op="subscribe", channel=channel)
            error = await live.wait_for(lambda m: m["type"] == "error", start=len(live.messages))
            assert error["code"] == "validation_error", (channel, error)
        for _ in range(120):
            await live.send(op="ping")
        await live.wait_for(lambda m: m.get("code") == "rate_limited")
        pongs = len(live.of_type("pong"))
        assert 40 <= pongs < 120  # a burst of 50 ops, four of them the subscribes
        await asyncio.sleep(0.2)  # the budget refills
        await live.send(op="subscribe", channel=f"market:{market}")
        snapshot = await live.wait_for(lambda m: m["type"] == "snapshot")
        assert snapshot["channel"] == f"market:{market}"


async def test_connections_that_negotiate_compression_are_served_through_asgi(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path, app: Litestar
) -> None:
    """Another server setting (permessage-deflate on): the queued path, same messages."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
        **{**SERVER_OPTIONS, "ws_per_message_deflate": True},
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await _until(lambda: server.started)
        market = (await create_market(client, admin))["id"]
        alice = await funded_trader(client, outbox_path, deposit=10_000)
        url = f"ws://127.0.0.1:{port}/api/v1/ws?token={alice.token}"
        async with connect(url, compression="deflate") as connection:
            live = Feed(connection)
            await live.send(op="subscribe", channel=f"market:{market}")
            await live.send(op="subscribe", channel="user")
            await live.wait_for(lambda m: m["type"] == "snapshot")
            [subscriber] = services_of(app).hub._rooms[market]
            assert not subscriber.direct
            order = await alice.placed(market, "yes", "buy", 2, 450)
            await live.wait_for(
                lambda m: (
                    m["type"] == "book"
                    and {"outcome": "yes", "price": 450, "quantity": 2} in m["changes"]
                )
            )
            update = await live.wait_for(lambda m: m["type"] == "order")
            assert update["order"]["id"] == order["id"]
            live._reader.cancel()
    finally:
        server.should_exit = True
        await task
