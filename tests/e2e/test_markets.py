"""Markets, minimal: admin creation with validation, the public list and detail, the
order book in SPEC §5's shape, and trades."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import assert_error, bearer, login
from tests.trading import create_market, escrow, funded_trader

IN_A_WEEK = (datetime.now(UTC) + timedelta(days=7)).isoformat()


async def test_admin_creates_a_market_with_its_escrow(
    client: httpx.AsyncClient, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    market = await create_market(
        client, admin, title="Will it rain in Mumbai?", tick=10, settlement_fee_bps=150
    )
    assert isinstance(market["id"], int)
    assert (market["status"], market["tick"], market["settlement_fee_bps"], market["outcome"]) == (
        "open",
        10,
        150,
        None,
    )
    assert (
        market["best_yes_bid"],
        market["best_no_bid"],
        market["last_price"],
        market["volume"],
    ) == (None, None, None, 0)
    assert await escrow(db, market["id"]) == 0
    assert (await client.get(f"/api/v1/markets/{market['id']}")).json() == market


async def test_market_creation_is_validated(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    base = {"title": "Valid?", "closes_at": IN_A_WEEK}
    for bad in (
        {"tick": 7},
        {"tick": 0},
        {"tick": 200},
        {"settlement_fee_bps": 2001},
        {"settlement_fee_bps": -1},
        {"closes_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
        {"closes_at": "2030-01-01T00:00:00"},  # no time zone
        {"title": ""},
        {"tick": "50"},
        # In UTC past year 9999, which no datetime holds (it was a 500).
        {"closes_at": "9999-12-31T23:59:59-14:00"},
    ):
        response = await client.post("/api/v1/admin/markets", json={**base, **bad}, headers=admin)
        assert_error(response, 422, "validation_error")
    token, _ = await login(client, outbox_path)
    assert_error(
        await client.post("/api/v1/admin/markets", json=base, headers=bearer(token)),
        403,
        "forbidden",
    )
    assert_error(await client.post("/api/v1/admin/markets", json=base), 401, "unauthorized")


async def test_order_book_shape_and_market_data(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    market = await create_market(client, admin)
    m = market["id"]
    a = await funded_trader(client, outbox_path, 100_000)
    b = await funded_trader(client, outbox_path, 100_000)
    await a.placed(m, "yes", "buy", 5, 400)
    await a.placed(m, "yes", "buy", 3, 450)
    await b.placed(m, "no", "buy", 2, 300)  # asks YES @700, shown as a NO bid @300
    await b.placed(m, "no", "buy", 4, 350)
    response = await client.get(f"/api/v1/markets/{m}/orderbook")
    assert response.status_code == 200
    book = response.json()
    assert book["yes"] == [{"price": 450, "quantity": 3}, {"price": 400, "quantity": 5}]
    assert book["no"] == [{"price": 350, "quantity": 4}, {"price": 300, "quantity": 2}]
    # seq numbers the book's published changes (coalesced): at least one so far.
    assert isinstance(book["seq"], int) and book["seq"] >= 1
    top = (await client.get(f"/api/v1/markets/{m}/orderbook", params={"depth": 1})).json()
    assert (top["yes"], top["no"]) == (
        [{"price": 450, "quantity": 3}],
        [{"price": 350, "quantity": 4}],
    )
    await b.placed(m, "no", "buy", 1, 600)  # an ask at YES 400: trades 1 at the best YES bid, 450
    after = (await client.get(f"/api/v1/markets/{m}/orderbook")).json()
    assert after["seq"] == book["seq"] + 1  # one more change, one more seq
    assert after["yes"][0] == {"price": 450, "quantity": 2}
    detail = (await client.get(f"/api/v1/markets/{m}")).json()
    assert (detail["last_price"], detail["volume"]) == (450, 1)
    assert (detail["best_yes_bid"], detail["best_no_bid"]) == (450, 350)
    listed = (
        await client.get("/api/v1/markets", params={"status": "open", "category": "testing"})
    ).json()
    assert m in [item["id"] for item in listed["items"]]
    assert (await client.get("/api/v1/markets", params={"category": "no-such-category"})).json()[
        "items"
    ] == []
    assert_error(await client.get("/api/v1/markets/999999999"), 404, "not_found")
    assert_error(await client.get("/api/v1/markets/999999999/orderbook"), 404, "not_found")
    assert_error(await client.get("/api/v1/markets/999999999/trades"), 404, "not_found")
    assert_error(
        await client.get("/api/v1/markets", params={"status": "bogus"}), 400, "validation_error"
    )


async def all_pages(client: httpx.AsyncClient, path: str, params: dict, pages_max: int) -> list:
    """Every page of a list, following `next_cursor`; each page at most `limit` items."""
    items: list[dict] = []
    cursor = None
    for _ in range(pages_max):
        response = await client.get(
            path, params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= params.get("limit", 50)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError(f"{path} never ended")


async def test_markets_page_newest_first_exactly_once(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    category = f"paging-{uuid.uuid4().hex[:8]}"
    created = [(await create_market(client, admin, category=category))["id"] for _ in range(53)]
    newest_first = sorted(created, reverse=True)
    first = (await client.get("/api/v1/markets", params={"category": category})).json()
    assert [m["id"] for m in first["items"]] == newest_first[:50]  # limit defaults to 50
    assert first["next_cursor"] is not None
    rest = (
        await client.get(
            "/api/v1/markets", params={"category": category, "cursor": first["next_cursor"]}
        )
    ).json()
    assert ([m["id"] for m in rest["items"]], rest["next_cursor"]) == (newest_first[50:], None)
    for limit in (1, 7, 53, 200):
        got = await all_pages(client, "/api/v1/markets", {"category": category, "limit": limit}, 60)
        assert [m["id"] for m in got] == newest_first, limit
    for limit in (0, 201, -1):
        assert_error(
            await client.get("/api/v1/markets", params={"limit": limit}), 400, "validation_error"
        )
    assert_error(
        await client.get("/api/v1/markets", params={"cursor": "bogus"}), 400, "validation_error"
    )


async def test_trades_page_newest_first_exactly_once(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    market = (await create_market(client, admin))["id"]
    path = f"/api/v1/markets/{market}/trades"
    yes = await funded_trader(client, outbox_path, deposit=30_000)
    await yes.placed(market, "yes", "buy", 53, 500)
    trade_ids = []
    for taker in [await funded_trader(client, outbox_path, deposit=15_000) for _ in range(2)]:
        for _ in range(27 if not trade_ids else 26):  # under each user's order rate limit
            order = await taker.placed(market, "no", "buy", 1, 500)
            trade_ids += [f["trade_id"] for f in order["fills"]]
    assert len(trade_ids) == 53
    newest_first = sorted(trade_ids, reverse=True)
    first = (await client.get(path)).json()
    assert [t["id"] for t in first["items"]] == newest_first[:50]  # limit defaults to 50
    rest = (await client.get(path, params={"cursor": first["next_cursor"]})).json()
    assert ([t["id"] for t in rest["items"]], rest["next_cursor"]) == (newest_first[50:], None)
    for limit in (1, 7, 53, 200):
        got = await all_pages(client, path, {"limit": limit}, 60)
        assert [t["id"] for t in got] == newest_first, limit
        assert {(t["price"], t["quantity"], t["kind"]) for t in got} == {(500, 1, "mint")}
    for limit in (0, 201):
        assert_error(await client.get(path, params={"limit": limit}), 400, "validation_error")
    assert_error(await client.get(path, params={"cursor": "bogus"}), 400, "validation_error")
