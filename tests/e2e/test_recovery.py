"""Restarts: the engine rebuilt from Postgres (SPEC §7): balances, positions, open
orders with their time priority and locks, id sequences, used client order ids and
withdrawal keys; and a Postgres outage while orders flow: 503s, never a 500, and
nothing acknowledged lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest_asyncio

from probo.app import create_app
from probo.ledger import audit_url
from probo.services import services_of
from tests.conftest import (
    assert_error,
    bearer,
    login,
    make_settings,
    new_phone,
    serving,
)
from tests.e2e.test_outages import _postgres_address, _through
from tests.fakes import TcpProxy
from tests.trading import Trader, create_market, engine_differences, funded_trader


@pytest_asyncio.fixture
async def own_database(scratch_database: str) -> AsyncIterator[str]:
    yield scratch_database
    assert await audit_url(scratch_database) == []


def rebind(trader: Trader, client: httpx.AsyncClient) -> Trader:
    """The same user and token, talking to another server."""
    trader.client = client
    return trader


async def test_restart_restores_books_priority_locks_and_ids(
    own_database: str, server_urls: tuple[str, str], redis_prefix: str, outbox_path: Path
) -> None:
    admin_phone = new_phone()
    settings = make_settings(
        own_database,
        server_urls[1],
        redis_prefix,
        outbox_path,
        admin_phones=frozenset({admin_phone}),
    )
    app = create_app(settings)
    async with serving(app) as client:
        admin_token, _ = await login(client, outbox_path, admin_phone)
        market = await create_market(client, bearer(admin_token))
        m = market["id"]
        a, b, c, d = [await funded_trader(client, outbox_path, 100_000) for _ in range(4)]
        first = await a.placed(m, "yes", "buy", 3, 500, client_order_id="a-1")
        second = await b.placed(m, "yes", "buy", 2, 500)
        await c.placed(m, "no", "buy", 1, 500)  # fills 1 of A's 3: A keeps 2 resting
        await c.placed(m, "no", "sell", 1, 600)  # C's NO rests as a YES bid @400, below A and B
        book_before = (await client.get(f"/api/v1/markets/{m}/orderbook")).json()
        wallets_before = [await t.wallet() for t in (a, b, c, d)]
    async with asyncpg.create_pool(own_database, min_size=1, max_size=2) as db:
        app = create_app(settings)
        async with serving(app) as client:
            a, b, c, d = (rebind(t, client) for t in (a, b, c, d))
            book = (await client.get(f"/api/v1/markets/{m}/orderbook")).json()
            assert (book["yes"], book["no"]) == (book_before["yes"], book_before["no"])
            assert [await t.wallet() for t in (a, b, c, d)] == wallets_before
            assert await engine_differences(app, db) == []
            # C's resting sell is still locked: it cannot be sold twice.
            assert_error(await c.order(m, "no", "sell", 1, 600), 422, "insufficient_position")
            # Time priority survived: the earliest order at 500 (A's) fills first.
            taken = await d.placed(m, "no", "buy", 2, 500)
            assert taken["status"] == "filled"
            assert taken["id"] > second["id"]  # ids go on from where they were
            a_order = (await client.get(f"/api/v1/orders/{first['id']}", headers=a.headers)).json()
            b_order = (await client.get(f"/api/v1/orders/{second['id']}", headers=b.headers)).json()
            assert (a_order["status"], a_order["filled_quantity"]) == ("filled", 3)
            assert (b_order["status"], b_order["filled_quantity"]) == ("open", 0)
            # A used client order id stays used.
            again = await a.order(m, "yes", "buy", 3, 500, client_order_id="a-1")
            assert (again.status_code, again.json()["id"]) == (200, first["id"])
            assert await engine_differences(app, db) == []


async def test_postgres_outage_while_orders_flow(
    own_database: str, server_urls: tuple[str, str], redis_prefix: str, outbox_path: Path
) -> None:
    proxy = TcpProxy(*_postgres_address(own_database))
    await proxy.start()
    admin_phone = new_phone()
    settings = make_settings(
        _through(own_database, proxy),
        server_urls[1],
        redis_prefix,
        outbox_path,
        ack_timeout_ms=300,
        ledger_backlog_max=20,
        admin_phones=frozenset({admin_phone}),
    )
    app = create_app(settings)
    try:
        async with (
            serving(app) as client,
            asyncpg.create_pool(own_database, min_size=1, max_size=2) as db,
        ):
            admin_token, _ = await login(client, outbox_path, admin_phone)
            market = await create_market(client, bearer(admin_token))
            m = market["id"]
            a, b = [await funded_trader(client, outbox_path, 100_000) for _ in range(2)]
            await a.placed(m, "yes", "buy", 50, 500)
            await proxy.cut()
            # Decided by the engine, not confirmed: 503, and the client keeps its ids.
            ids = [f"outage-{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
            for client_order_id in ids:
                response = await b.order(m, "no", "buy", 2, 500, client_order_id=client_order_id)
                assert_error(response, 503, "unavailable")
            # Beyond the bounded backlog, new orders are refused at once, with Retry-After.
            responses = await asyncio.gather(*(b.order(m, "yes", "buy", 1, 50) for _ in range(30)))
            assert {r.status_code for r in responses} == {503}
            assert any("retry-after" in r.headers for r in responses)
            not_ready = (await client.get("/readyz")).json()["error"]["checks"]
            assert (not_ready["postgres"], not_ready["ledger"]) == (False, False)
            await proxy.restore()
            # The writer retries until its batches commit; the orders were kept.
            for _ in range(100):
                if (
                    services_of(app).writer.backlog == 0
                    and services_of(app).writer.stalled_since is None
                ):
                    break
                await asyncio.sleep(0.1)
            for client_order_id in ids:
                found = await client.get(
                    "/api/v1/orders", params={"client_order_id": client_order_id}, headers=b.headers
                )
                [order] = found.json()["items"]
                assert (order["status"], order["filled_quantity"]) == ("filled", 2)
                repeat = await b.order(m, "no", "buy", 2, 500, client_order_id=client_order_id)
                assert (repeat.status_code, repeat.json()["id"]) == (200, order["id"])
            assert (await a.portfolio_position(m))["yes_quantity"] == 10
            assert await engine_differences(app, db) == []
    finally:
        await proxy.cut()


async def test_trading_goes_on_while_redis_is_away(
    own_database: str, server_urls: tuple[str, str], redis_prefix: str, outbox_path: Path
) -> None:
    admin_phone = new_phone()
    settings = make_settings(
        own_database,
        server_urls[1],
        redis_prefix,
        outbox_path,
        admin_phones=frozenset({admin_phone}),
    )
    async with serving(create_app(settings)) as client:
        admin_token, _ = await login(client, outbox_path, admin_phone)
        market = await create_market(client, bearer(admin_token))
        a, b = [await funded_trader(client, outbox_path, 100_000) for _ in range(2)]
    # The same database and secret, Redis at an address where nothing listens.
    no_redis = make_settings(
        own_database,
        "redis://127.0.0.1:1/0",
        redis_prefix,
        outbox_path,
        admin_phones=frozenset({admin_phone}),
    )
    app = create_app(no_redis)
    async with (
        serving(app) as client,
        asyncpg.create_pool(own_database, min_size=1, max_size=2) as db,
    ):
        a, b = rebind(a, client), rebind(b, client)
        ready = (await client.get("/readyz")).json()
        assert (ready["status"], ready["redis"]) == ("ready", False)
        resting = await a.placed(market["id"], "yes", "buy", 5, 600)
        taken = await b.placed(market["id"], "no", "buy", 3, 400)
        assert [(f["quantity"], f["kind"]) for f in taken["fills"]] == [(3, "mint")]
        canceled = await client.delete(f"/api/v1/orders/{resting['id']}", headers=a.headers)
        assert canceled.json()["status"] == "canceled"
        assert await a.wallet() == {
            "currency": "INR",
            "balance": 101_500 - 1800,
            "locked": 0,
            "available": 99_700,
        }
        book = await client.get(f"/api/v1/markets/{market['id']}/orderbook")
        assert book.status_code == 200
        assert_error(
            await client.post("/api/v1/auth/otp", json={"phone": new_phone()}), 503, "unavailable"
        )
        assert await engine_differences(app, db) == []
