"""Order entry over HTTP: every kind of trade with exact money in the API and in
Postgres, every path that releases a lock, and the order endpoints' contract."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from litestar import Litestar

from probo.services import services_of
from tests.conftest import assert_error
from tests.trading import (
    Trader,
    create_market,
    database_cash,
    database_position,
    engine_differences,
    escrow,
    funded_trader,
)

FUNDS = 100_000
START = FUNDS + 1500  # deposit + signup bonus


@pytest.fixture
async def market(client: httpx.AsyncClient, admin: dict[str, str]) -> dict:
    return await create_market(client, admin)


async def traders(client: httpx.AsyncClient, outbox: Path, count: int) -> list[Trader]:
    return [await funded_trader(client, outbox, FUNDS) for _ in range(count)]


async def wallet_is(trader: Trader, balance: int, locked: int, db: asyncpg.Pool) -> None:
    assert await trader.wallet() == {
        "currency": "INR",
        "balance": balance,
        "locked": locked,
        "available": balance - locked,
    }
    assert await database_cash(db, trader.id) == balance


async def test_all_four_kinds_of_trade_move_exact_money(
    client: httpx.AsyncClient, outbox_path: Path, market: dict, db: asyncpg.Pool, app: Litestar
) -> None:
    a, b, c, d = await traders(client, outbox_path, 4)
    m = market["id"]

    # Mint: buy YES @600 rests, buy NO @400 meets it; both pay into escrow.
    resting = await a.placed(m, "yes", "buy", 10, 600)
    assert (resting["status"], resting["remaining_quantity"], resting["fills"]) == ("open", 10, [])
    await wallet_is(a, START, 6000, db)
    taker = await b.placed(m, "no", "buy", 10, 400)
    assert taker["status"] == "filled"
    assert [(f["price"], f["quantity"], f["kind"]) for f in taker["fills"]] == [(400, 10, "mint")]
    assert (taker["filled_quantity"], taker["remaining_quantity"], taker["average_price"]) == (
        10,
        0,
        400,
    )
    await wallet_is(a, START - 6000, 0, db)
    await wallet_is(b, START - 4000, 0, db)
    assert await escrow(db, m) == 10_000
    assert await database_position(db, a.id, m) == (10, 0)
    assert await database_position(db, b.id, m) == (0, 10)

    # Transfer of YES: A sells 4 @650, C buys @700 and pays the resting price.
    await a.placed(m, "yes", "sell", 4, 650)
    position = await a.portfolio_position(m)
    assert (position["yes_quantity"], position["yes_locked"]) == (10, 4)
    bought = await c.placed(m, "yes", "buy", 4, 700)
    assert [(f["price"], f["kind"]) for f in bought["fills"]] == [(650, "transfer")]
    await wallet_is(c, START - 2600, 0, db)
    await wallet_is(a, START - 6000 + 2600, 0, db)
    assert await escrow(db, m) == 10_000
    position = await a.portfolio_position(m)
    assert (position["yes_quantity"], position["yes_locked"], position["realized_pnl"]) == (
        6,
        0,
        4 * 50,
    )

    # Merge: A sells YES 6 @550, B sells NO 6 @450; escrow pays both.
    await a.placed(m, "yes", "sell", 6, 550)
    merged = await b.placed(m, "no", "sell", 6, 450)
    assert [(f["price"], f["quantity"], f["kind"]) for f in merged["fills"]] == [(450, 6, "merge")]
    await wallet_is(a, START - 6000 + 2600 + 3300, 0, db)
    await wallet_is(b, START - 4000 + 2700, 0, db)
    assert await escrow(db, m) == 4000
    assert await database_position(db, a.id, m) == (0, 0)
    assert await database_position(db, b.id, m) == (0, 4)

    # Transfer of NO: B sells NO 4 @500, D buys NO @500.
    await b.placed(m, "no", "sell", 4, 500)
    bought = await d.placed(m, "no", "buy", 4, 500)
    assert [(f["price"], f["kind"]) for f in bought["fills"]] == [(500, "transfer")]
    await wallet_is(d, START - 2000, 0, db)
    await wallet_is(b, START - 4000 + 2700 + 2000, 0, db)
    assert await database_position(db, d.id, m) == (0, 4)
    assert await database_position(db, c.id, m) == (4, 0)
    assert await escrow(db, m) == 4000

    # The market's trades, newest first, in YES terms.
    trades = (await client.get(f"/api/v1/markets/{m}/trades")).json()["items"]
    assert [
        (t["price"], t["quantity"], t["kind"], t["taker_outcome"], t["taker_side"]) for t in trades
    ] == [
        (500, 4, "transfer", "no", "buy"),
        (550, 6, "merge", "no", "sell"),
        (650, 4, "transfer", "yes", "buy"),
        (600, 10, "mint", "no", "buy"),
    ]
    assert await engine_differences(app, db) == []


async def test_a_better_price_releases_the_difference(
    client: httpx.AsyncClient, outbox_path: Path, market: dict, db: asyncpg.Pool
) -> None:
    a, b = await traders(client, outbox_path, 2)
    m = market["id"]
    await b.placed(m, "no", "buy", 5, 400)  # an ask at YES 600
    order = await a.placed(m, "yes", "buy", 8, 700)
    assert (order["status"], order["filled_quantity"], order["remaining_quantity"]) == (
        "open",
        5,
        3,
    )
    assert order["fills"][0]["price"] == 600
    # Paid 5 x 600; still holds 3 x 700 for the rest.
    await wallet_is(a, START - 3000, 2100, db)


async def test_cancel_releases_the_lock_and_answers_the_order(
    client: httpx.AsyncClient, outbox_path: Path, market: dict, db: asyncpg.Pool
) -> None:
    [a] = await traders(client, outbox_path, 1)
    order = await a.placed(market["id"], "yes", "buy", 10, 300)
    await wallet_is(a, START, 3000, db)
    response = await client.delete(f"/api/v1/orders/{order['id']}", headers=a.headers)
    assert response.status_code == 200, response.text
    canceled = response.json()
    assert (canceled["id"], canceled["status"], canceled["remaining_quantity"]) == (
        order["id"],
        "canceled",
        0,
    )
    await wallet_is(a, START, 0, db)
    again = await client.delete(f"/api/v1/orders/{order['id']}", headers=a.headers)
    assert_error(again, 409, "order_not_open")


async def test_cancel_of_a_sell_gives_the_contracts_back(
    client: httpx.AsyncClient, outbox_path: Path, market: dict
) -> None:
    a, b = await traders(client, outbox_path, 2)
    m = market["id"]
    await a.placed(m, "yes", "buy", 5, 500)
    await b.placed(m, "no", "buy", 5, 500)
    sell = await a.placed(m, "yes", "sell", 5, 800)
    assert (await a.portfolio_position(m))["yes_locked"] == 5
    assert (
        await client.delete(f"/api/v1/orders/{sell['id']}", headers=a.headers)
    ).status_code == 200
    assert (await a.portfolio_position(m))["yes_locked"] == 0
    # The contracts are free again: they can be sold.
    await a.placed(m, "yes", "sell", 5, 800)


async def test_ioc_cancels_what_does_not_fill_and_releases_it(
    client: httpx.AsyncClient, outbox_path: Path, market: dict, db: asyncpg.Pool
) -> None:
    a, b = await traders(client, outbox_path, 2)
    m = market["id"]
    await b.placed(m, "no", "buy", 3, 500)
    order = await a.placed(m, "yes", "buy", 10, 500, time_in_force="ioc")
    assert (order["status"], order["filled_quantity"], order["remaining_quantity"]) == (
        "canceled",
        3,
        0,
    )
    await wallet_is(a, START - 1500, 0, db)


async def test_fok_fills_completely_or_not_at_all(
    client: httpx.AsyncClient, outbox_path: Path, market: dict, db: asyncpg.Pool
) -> None:
    a, b = await traders(client, outbox_path, 2)
    m = market["id"]
    await b.placed(m, "no", "buy", 3, 500)
    unfilled = await a.placed(m, "yes", "buy", 4, 500, time_in_force="fok")
    assert (unfilled["status"], unfilled["filled_quantity"], unfilled["fills"]) == (
        "canceled",
        0,
        [],
    )
    await wallet_is(a, START, 0, db)
    filled = await a.placed(m, "yes", "buy", 3, 500, time_in_force="fok")
    assert (filled["status"], filled["filled_quantity"]) == ("filled", 3)
    await wallet_is(a, START - 1500, 0, db)


async def test_market_buy_fills_only_what_funds_allow(
    client: httpx.AsyncClient, outbox_path: Path, market: dict, db: asyncpg.Pool
) -> None:
    poor = await funded_trader(client, outbox_path)  # 1500 paise
    [seller] = await traders(client, outbox_path, 1)
    m = market["id"]
    await seller.placed(m, "no", "buy", 10, 600)  # asks at YES 400
    order = await poor.placed(m, "yes", "buy", 10)
    assert (order["type"], order["time_in_force"], order["price"]) == ("market", "ioc", None)
    assert (order["status"], order["filled_quantity"], order["average_price"]) == (
        "canceled",
        3,
        400,
    )
    await wallet_is(poor, 300, 0, db)


async def test_market_order_that_fills_nothing_is_canceled(
    client: httpx.AsyncClient, outbox_path: Path, market: dict
) -> None:
    [a] = await traders(client, outbox_path, 1)
    order = await a.placed(market["id"], "no", "buy", 5)
    assert (order["status"], order["filled_quantity"], order["remaining_quantity"]) == (
        "canceled",
        0,
        0,
    )


async def test_self_trade_cancels_the_resting_order(
    client: httpx.AsyncClient, outbox_path: Path, market: dict, db: asyncpg.Pool
) -> None:
    a, b = await traders(client, outbox_path, 2)
    m = market["id"]
    own = await a.placed(m, "no", "buy", 5, 400)  # ask at YES 600
    other = await b.placed(m, "no", "buy", 5, 400)
    order = await a.placed(m, "yes", "buy", 5, 600)
    assert [(f["quantity"], f["price"]) for f in order["fills"]] == [(5, 600)]
    mine = (await client.get(f"/api/v1/orders/{own['id']}", headers=a.headers)).json()
    assert (mine["status"], mine["cancel_reason"]) == ("canceled", "self_trade")
    theirs = (await client.get(f"/api/v1/orders/{other['id']}", headers=b.headers)).json()
    assert theirs["status"] == "filled"
    await wallet_is(a, START - 3000, 0, db)


async def test_cancel_all_in_a_market(
    client: httpx.AsyncClient, outbox_path: Path, market: dict, db: asyncpg.Pool
) -> None:
    [a] = await traders(client, outbox_path, 1)
    m = market["id"]
    ids = [(await a.placed(m, "yes", "buy", 1, price))["id"] for price in (100, 200, 300)]
    await wallet_is(a, START, 600, db)
    response = await client.delete("/api/v1/orders", params={"market_id": m}, headers=a.headers)
    assert response.status_code == 200, response.text
    assert sorted(o["id"] for o in response.json()["canceled"]) == ids
    assert all(o["status"] == "canceled" for o in response.json()["canceled"])
    await wallet_is(a, START, 0, db)
    listed = (
        await client.get("/api/v1/orders", params={"status": "open"}, headers=a.headers)
    ).json()
    assert listed["items"] == []


async def test_client_order_id_repeat_returns_the_original(
    client: httpx.AsyncClient, outbox_path: Path, market: dict, db: asyncpg.Pool
) -> None:
    [a] = await traders(client, outbox_path, 1)
    client_id = uuid.uuid4().hex
    first = await a.order(market["id"], "yes", "buy", 2, 500, client_order_id=client_id)
    again = await a.order(market["id"], "yes", "buy", 2, 500, client_order_id=client_id)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["client_order_id"] == client_id
    await wallet_is(a, START, 1000, db)


async def test_concurrent_repeats_of_a_client_order_id_place_one_order(
    client: httpx.AsyncClient, outbox_path: Path, market: dict, db: asyncpg.Pool
) -> None:
    [a] = await traders(client, outbox_path, 1)
    client_id = uuid.uuid4().hex
    responses = await asyncio.gather(
        *(a.order(market["id"], "yes", "buy", 1, 100, client_order_id=client_id) for _ in range(10))
    )
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    await wallet_is(a, START, 100, db)


async def test_rejections_have_codes(
    client: httpx.AsyncClient, outbox_path: Path, market: dict
) -> None:
    poor = await funded_trader(client, outbox_path)
    m = market["id"]
    assert_error(await poor.order(m, "yes", "buy", 10, 525), 422, "invalid_price")
    assert_error(await poor.order(m, "yes", "buy", 10, 1000), 422, "invalid_price")
    assert_error(await poor.order(m, "yes", "buy", 10, 0), 422, "invalid_price")
    assert_error(await poor.order(m, "yes", "buy", 10, 950), 422, "insufficient_funds")
    assert_error(await poor.order(m, "yes", "sell", 1, 500), 422, "insufficient_position")
    market_with_price = {
        "market_id": m,
        "outcome": "no",
        "side": "buy",
        "type": "market",
        "quantity": 1,
        "price": 500,
    }
    assert_error(
        await client.post("/api/v1/orders", json=market_with_price, headers=poor.headers),
        422,
        "validation_error",
    )
    assert_error(
        await poor.order(m, "no", "buy", 1, None, time_in_force="gtc"), 422, "validation_error"
    )
    # "No price" may also be said with null: it is a market order like any other.
    market_with_null_price = {**market_with_price, "price": None}
    answered = await client.post(
        "/api/v1/orders", json=market_with_null_price, headers=poor.headers
    )
    assert answered.status_code == 201, answered.text
    assert (answered.json()["type"], answered.json()["price"]) == ("market", None)
    assert_error(await poor.order(m, "yes", "buy", 1, 500.0), 422, "validation_error")
    assert_error(await poor.order(m, "yes", "buy", 0, 500), 422, "validation_error")
    assert_error(await poor.order(m, "yes", "buy", 100_001, 500), 422, "validation_error")
    assert_error(await poor.order(m, "maybe", "buy", 1, 500), 422, "validation_error")
    assert_error(await poor.order(10**12, "yes", "buy", 1, 500), 404, "not_found")
    limit_without_price = await client.post(
        "/api/v1/orders",
        json={"market_id": m, "outcome": "yes", "side": "buy", "type": "limit", "quantity": 1},
        headers=poor.headers,
    )
    assert_error(limit_without_price, 422, "validation_error")
    assert_error(await client.post("/api/v1/orders", json={"market_id": m}), 401, "unauthorized")


async def test_another_users_order_is_not_found(
    client: httpx.AsyncClient, outbox_path: Path, market: dict
) -> None:
    a, b = await traders(client, outbox_path, 2)
    order = await a.placed(market["id"], "yes", "buy", 1, 500)
    assert_error(
        await client.get(f"/api/v1/orders/{order['id']}", headers=b.headers), 404, "not_found"
    )
    assert_error(
        await client.delete(f"/api/v1/orders/{order['id']}", headers=b.headers), 404, "not_found"
    )
    assert_error(
        await client.delete("/api/v1/orders/999999999", headers=b.headers), 404, "not_found"
    )
    # Still open for its owner.
    assert (await client.get(f"/api/v1/orders/{order['id']}", headers=a.headers)).json()[
        "status"
    ] == "open"


async def test_orders_and_fills_page_newest_first(
    client: httpx.AsyncClient, outbox_path: Path, market: dict
) -> None:
    a, b = await traders(client, outbox_path, 2)
    m = market["id"]
    placed = [(await a.placed(m, "yes", "buy", 1, 100 + 50 * i))["id"] for i in range(5)]
    for _ in range(3):
        await b.placed(m, "no", "buy", 1, 800)  # an ask at YES 200: meets the best YES bid
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 2, "market_id": m}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get("/api/v1/orders", params=params, headers=a.headers)).json()
        seen += [o["id"] for o in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == placed[::-1]
    fills = (await client.get("/api/v1/fills", headers=a.headers)).json()["items"]
    # Each meets A's best bid in turn, at A's price: 300, then 250, then 200.
    assert [(f["price"], f["role"], f["outcome"], f["side"]) for f in fills] == [
        (200, "maker", "yes", "buy"),
        (250, "maker", "yes", "buy"),
        (300, "maker", "yes", "buy"),
    ]
    assert_error(
        await client.get("/api/v1/orders", params={"cursor": "nonsense!"}, headers=a.headers),
        400,
        "validation_error",
    )


async def test_portfolio_average_cost_mark_and_pnl(
    client: httpx.AsyncClient, outbox_path: Path, market: dict
) -> None:
    a, b, c = await traders(client, outbox_path, 3)
    m = market["id"]
    await b.placed(m, "no", "buy", 4, 400)  # asks YES @600
    await b.placed(m, "no", "buy", 4, 300)  # asks YES @700
    await a.placed(m, "yes", "buy", 8, 700)  # 4 @600 + 4 @700: cost 5200
    await c.placed(m, "yes", "buy", 2, 550)  # the best YES bid
    position = await a.portfolio_position(m)
    assert position["title"] == market["title"]
    assert (position["yes_quantity"], position["yes_average_price"], position["invested"]) == (
        8,
        650,
        5200,
    )
    assert (position["mark_value"], position["unrealized_pnl"], position["realized_pnl"]) == (
        8 * 550,
        8 * 550 - 5200,
        0,
    )
    await a.placed(m, "yes", "sell", 2, 550)  # sells to C at 550: realises 2 x (550 - 650)
    position = await a.portfolio_position(m)
    assert (position["yes_quantity"], position["invested"], position["realized_pnl"]) == (
        6,
        3900,
        -200,
    )


async def test_first_order_makes_the_user_not_new(
    client: httpx.AsyncClient, outbox_path: Path, market: dict
) -> None:
    [a] = await traders(client, outbox_path, 1)
    assert (await client.get("/api/v1/me", headers=a.headers)).json()["is_new"] is True
    await a.placed(market["id"], "yes", "buy", 1, 100)
    assert (await client.get("/api/v1/me", headers=a.headers)).json()["is_new"] is False


async def test_order_rate_limit(
    client: httpx.AsyncClient, outbox_path: Path, market: dict, app: Litestar
) -> None:
    [a] = await traders(client, outbox_path, 1)
    limit = services_of(app).settings.order_rate_limit
    started = time.monotonic()
    responses = await asyncio.gather(
        *(a.order(market["id"], "yes", "buy", 1, 50) for _ in range(3 * limit))
    )
    elapsed = time.monotonic() - started
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 429}, statuses
    # A full bucket of `limit`, refilled at `limit` per second while the burst lasted.
    assert statuses.count(201) <= limit + elapsed * limit + 1, (statuses.count(201), elapsed)
    limited = next(r for r in responses if r.status_code == 429)
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    await client.delete("/api/v1/orders", params={"market_id": market["id"]}, headers=a.headers)


async def test_one_position_is_the_portfolios_entry_zeros_when_none_404_for_no_market(
    client: httpx.AsyncClient, outbox_path: Path, market: dict
) -> None:
    a, b = await traders(client, outbox_path, 2)
    m = market["id"]
    await b.placed(m, "no", "buy", 3, 400)  # asks YES @600
    await a.placed(m, "yes", "buy", 3, 600)
    await a.placed(m, "yes", "sell", 1, 900)  # rests: locks 1 YES
    one = await client.get(f"/api/v1/portfolio/{m}", headers=a.headers)
    assert one.status_code == 200, one.text
    assert one.json() == await a.portfolio_position(m)
    assert (one.json()["yes_quantity"], one.json()["yes_locked"]) == (3, 1)
    [c] = await traders(client, outbox_path, 1)
    none = (await client.get(f"/api/v1/portfolio/{m}", headers=c.headers)).json()
    assert (none["market_id"], none["title"], none["yes_quantity"], none["no_quantity"]) == (
        m,
        market["title"],
        0,
        0,
    )
    assert (none["invested"], none["mark_value"], none["realized_pnl"], none["payout"]) == (
        0,
        0,
        0,
        0,
    )
    assert_error(
        await client.get("/api/v1/portfolio/999999999", headers=a.headers), 404, "not_found"
    )
    await client.delete("/api/v1/orders", params={"market_id": m}, headers=a.headers)
