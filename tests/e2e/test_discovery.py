"""Discovery (SPEC §12): search, filters and sorts of the market list with cursor paging,
the 24 h figures every market carries, categories, the `ticker` WebSocket channel, the
watchlist, and an admin's market edit.

The suite's database is shared: every test makes its own markets and looks only at
them (a unique category or word)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import assert_error, bearer, login
from tests.e2e.test_realtime import feed
from tests.trading import Trader, create_market, funded_trader

WAIT_S = 10.0


def word() -> str:
    """A word no other market has."""
    return f"zq{uuid.uuid4().hex[:10]}"


async def listed(client: httpx.AsyncClient, **params: object) -> list[dict]:
    """Every market of the list, following the cursors, `limit` per page."""
    items: list[dict] = []
    cursor = None
    for _ in range(100):
        query = {k: v for k, v in params.items() if v is not None}
        if cursor:
            query["cursor"] = cursor
        response = await client.get("/api/v1/markets", params=query)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the list did not end")


async def eventually(
    client: httpx.AsyncClient, market_id: int, holds: Callable[[dict], bool]
) -> dict:
    """The market once `holds` (the 24 h figures are refreshed in the background)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        response = await client.get(f"/api/v1/markets/{market_id}")
        assert response.status_code == 200, response.text
        market = response.json()
        if holds(market):
            return market
        assert time.monotonic() < deadline, market
        await asyncio.sleep(0.1)


async def traded(
    buyer: Trader, seller: Trader, market_id: int, quantity: int, yes_price: int
) -> None:
    """`quantity` contracts minted at `yes_price`: a NO bid rests, a YES buy meets it."""
    await seller.placed(market_id, "no", "buy", quantity, 1000 - yes_price)
    order = await buyer.placed(market_id, "yes", "buy", quantity, yes_price)
    assert order["status"] == "filled", order


# --- search, filters, sorts ----------------------------------------------------------------


async def test_search_finds_words_of_title_and_description_in_any_case(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    in_title, in_description = word(), word()
    by_title = await create_market(client, admin, title=f"Will {in_title.upper()} win the final?")
    by_description = await create_market(
        client, admin, title="Will it rain?", description=f"Weather at {in_description}, Mumbai."
    )
    assert [m["id"] for m in await listed(client, q=in_title)] == [by_title["id"]]
    assert [m["id"] for m in await listed(client, q=in_description.upper())] == [
        by_description["id"]
    ]
    # A word is found by its beginning, and every word of the query must be there.
    assert [m["id"] for m in await listed(client, q=in_title[:8])] == [by_title["id"]]
    assert [m["id"] for m in await listed(client, q=f"final {in_title}")] == [by_title["id"]]
    assert await listed(client, q=f"rain {in_title}") == []
    assert await listed(client, q=word()) == []
    # Query syntax is only words.
    for odd in ("'", "a & | !", "\\", ":*", "(", "it's"):
        response = await client.get("/api/v1/markets", params={"q": odd})
        assert response.status_code == 200, (odd, response.text)


async def test_category_and_status_filters(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    category = word()
    first = await create_market(client, admin, category=category)
    second = await create_market(client, admin, category=category)
    await create_market(client, admin)
    assert [m["id"] for m in await listed(client, category=category)] == [second["id"], first["id"]]
    response = await client.post(f"/api/v1/admin/markets/{first['id']}/pause", headers=admin)
    assert response.status_code == 200, response.text
    assert [m["id"] for m in await listed(client, category=category, status="open")] == [
        second["id"]
    ]
    assert [m["id"] for m in await listed(client, category=category, status="paused")] == [
        first["id"]
    ]


async def test_each_sort_pages_through_every_market_once(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    category = word()
    now = datetime.now(UTC)
    markets = [
        await create_market(
            client, admin, category=category, closes_at=(now + timedelta(days=d)).isoformat()
        )
        for d in (5, 2, 9, 2, 7)
    ]
    ids = [m["id"] for m in markets]
    alice = await funded_trader(client, outbox_path, deposit=100_000)
    bob = await funded_trader(client, outbox_path, deposit=100_000)
    volumes = {ids[0]: 2, ids[1]: 5, ids[3]: 2}
    for market_id, quantity in volumes.items():
        await traded(alice, bob, market_id, quantity, 500)
    for market_id, quantity in volumes.items():
        await eventually(client, market_id, lambda m, q=quantity: m["volume_24h"] == q)

    by_volume = [ids[1], ids[3], ids[0], ids[4], ids[2]]  # ties: newest first
    by_closing = [ids[1], ids[3], ids[0], ids[4], ids[2]]  # ties: oldest first
    assert by_volume != sorted(ids, reverse=True)
    for limit in (1, 2, 3, 200):
        assert [m["id"] for m in await listed(client, category=category, limit=limit)] == sorted(
            ids, reverse=True
        )
        got = await listed(client, category=category, sort="new", limit=limit)
        assert [m["id"] for m in got] == sorted(ids, reverse=True)
        got = await listed(client, category=category, sort="volume", limit=limit)
        assert [m["id"] for m in got] == by_volume
        got = await listed(client, category=category, sort="closing", limit=limit)
        assert [m["id"] for m in got] == by_closing


async def test_bad_sort_status_and_cursors_are_refused(client: httpx.AsyncClient) -> None:
    for params in (
        {"sort": "hot"},
        {"status": "gone"},
        {"cursor": "!!"},
        {"cursor": "bm90LWEtY3Vyc29y"},  # base64 of text that is not one of ours
        {"q": "x" * 101},
        {"q": "a\x00b"},
        {"limit": 0},
    ):
        assert_error(await client.get("/api/v1/markets", params=params), 400, "validation_error")
    # A cursor of one sort is no cursor of another.
    first = (await client.get("/api/v1/markets", params={"limit": 1, "sort": "closing"})).json()
    assert first["next_cursor"] is not None
    response = await client.get(
        "/api/v1/markets", params={"sort": "volume", "cursor": first["next_cursor"]}
    )
    assert_error(response, 400, "validation_error")


async def test_empty_filters_are_no_filters(client: httpx.AsyncClient) -> None:
    """SPEC §12 writes the list as `?q=&category=&status=&sort=`: empty values filter nothing."""
    everything = (await client.get("/api/v1/markets", params={"limit": 5})).json()
    empty = {"q": "", "category": "", "status": "", "sort": "", "limit": 5}
    response = await client.get("/api/v1/markets", params=empty)
    assert response.status_code == 200, response.text
    assert [m["id"] for m in response.json()["items"]] == [m["id"] for m in everything["items"]]


# --- the 24 h figures ------------------------------------------------------------------------


async def test_markets_carry_24h_volume_price_change_and_open_interest(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path, db: asyncpg.Pool
) -> None:
    market = await create_market(client, admin)
    market_id = market["id"]
    assert (market["volume_24h"], market["price_change_24h"], market["open_interest"]) == (
        0,
        None,
        0,
    )
    alice = await funded_trader(client, outbox_path, deposit=100_000)
    bob = await funded_trader(client, outbox_path, deposit=100_000)
    await traded(alice, bob, market_id, 3, 400)
    # As fresh as the commit: no wait.
    market = (await client.get(f"/api/v1/markets/{market_id}")).json()
    assert market["volume_24h"] == 3
    # No trade as old as a day: the price then is unknown.
    assert (market["price_change_24h"], market["open_interest"]) == (None, 3)

    # That trade happened 25 hours ago; then another now.
    await db.execute(
        "UPDATE trades SET created_at = created_at - interval '25 hours' WHERE market_id = $1",
        market_id,
    )
    await traded(alice, bob, market_id, 2, 650)
    market = await eventually(client, market_id, lambda m: m["volume_24h"] == 2)
    assert (market["price_change_24h"], market["open_interest"]) == (650 - 400, 5)
    assert (market["volume"], market["last_price"]) == (5, 650)

    # Selling YES to a NO buyer merges: fewer contracts outstanding.
    await bob.placed(market_id, "no", "sell", 1, 300)
    order = await alice.placed(market_id, "yes", "sell", 1, 700)
    assert order["status"] == "filled", order
    market = (await client.get(f"/api/v1/markets/{market_id}")).json()
    assert (market["open_interest"], market["volume_24h"], market["price_change_24h"]) == (
        4,
        3,
        700 - 400,
    )
    listed_market = next(
        m for m in await listed(client, q=market["title"].split()[2]) if m["id"] == market_id
    )
    assert listed_market == market


async def test_categories_count_open_markets(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    busy, done = word(), word()
    for _ in range(3):
        await create_market(client, admin, category=busy)
    closing = await create_market(client, admin, category=busy)
    gone = await create_market(client, admin, category=done)
    for market in (closing, gone):
        response = await client.post(f"/api/v1/admin/markets/{market['id']}/close", headers=admin)
        assert response.status_code == 200, response.text
    response = await client.get("/api/v1/categories")
    assert response.status_code == 200, response.text
    counts = {item["category"]: item["open_markets"] for item in response.json()["items"]}
    assert counts[busy] == 3
    assert done not in counts  # no open market left
    assert "" not in counts


# --- the ticker channel -----------------------------------------------------------------------


async def test_ticker_sends_a_market_line_when_it_changes(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    market_id = (await create_market(client, admin))["id"]
    alice = await funded_trader(client, outbox_path, deposit=100_000)
    bob = await funded_trader(client, outbox_path, deposit=100_000)
    async with feed(client) as ticker:
        await ticker.send(op="subscribe", channel="ticker")
        await ticker.wait_for(lambda m: m == {"type": "subscribed", "channel": "ticker"})

        def lines() -> list[dict]:
            return [m for m in ticker.of_type("ticker") if m["market_id"] == market_id]

        await alice.placed(market_id, "yes", "buy", 4, 300)
        line = await ticker.wait_for(lambda m: m.get("market_id") == market_id)
        assert line == {
            "type": "ticker",
            "channel": "ticker",
            "market_id": market_id,
            "best_yes_bid": 300,
            "best_no_bid": None,
            "last_price": None,
            "volume": 0,
        }
        # A trade: the bid shrinks (its best price stays), last price and volume move.
        await bob.placed(market_id, "no", "buy", 1, 700)
        line = await ticker.wait_for(lambda m: m.get("market_id") == market_id and m["volume"])
        seen = len(lines())
        assert seen == 2, lines()
        assert (line["best_yes_bid"], line["best_no_bid"], line["last_price"], line["volume"]) == (
            300,
            None,
            300,
            1,
        )
        # Nothing the line shows changes: no line. A NO bid: a line.
        await alice.placed(market_id, "yes", "buy", 1, 200)
        await alice.placed(market_id, "yes", "buy", 1, 300)
        await bob.placed(market_id, "no", "buy", 1, 600)
        line = await ticker.wait_for(
            lambda m: m.get("market_id") == market_id and m["best_no_bid"] == 600
        )
        assert len(lines()) == seen + 1, lines()
        assert (line["best_yes_bid"], line["last_price"], line["volume"]) == (300, 300, 1)
        await ticker.send(op="unsubscribe", channel="ticker")
        await ticker.wait_for(lambda m: m == {"type": "unsubscribed", "channel": "ticker"})
        await bob.placed(market_id, "no", "buy", 1, 650)
        await asyncio.sleep(0.2)
        assert len(lines()) == seen + 1


# --- the watchlist -------------------------------------------------------------------------------


async def test_watchlist_put_delete_get(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    token, _ = await login(client, outbox_path)
    me = bearer(token)
    markets = [await create_market(client, admin) for _ in range(3)]
    for market in markets:
        response = await client.put(f"/api/v1/watchlist/{market['id']}", headers=me)
        assert response.status_code == 200, response.text
        assert response.json() == {"market_id": market["id"], "watched": True}
    again = await client.put(f"/api/v1/watchlist/{markets[0]['id']}", headers=me)
    assert again.status_code == 200, again.text

    async def watched(limit: int) -> list[dict]:
        items: list[dict] = []
        cursor = None
        while True:
            params: dict[str, object] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            response = await client.get("/api/v1/watchlist", params=params, headers=me)  # type: ignore[arg-type]
            assert response.status_code == 200, response.text
            items += response.json()["items"]
            cursor = response.json()["next_cursor"]
            if cursor is None:
                return items

    newest_first = [m["id"] for m in reversed(markets)]
    for limit in (1, 2, 50):
        assert [m["id"] for m in await watched(limit)] == newest_first
    page = await watched(50)
    assert page[0] == (await client.get(f"/api/v1/markets/{markets[-1]['id']}")).json()

    response = await client.delete(f"/api/v1/watchlist/{markets[1]['id']}", headers=me)
    assert response.status_code == 200, response.text
    assert response.json() == {"market_id": markets[1]["id"], "watched": False}
    response = await client.delete(f"/api/v1/watchlist/{markets[1]['id']}", headers=me)
    assert response.status_code == 200, response.text
    assert [m["id"] for m in await watched(50)] == [markets[2]["id"], markets[0]["id"]]

    # Another user's list is their own.
    other, _ = await login(client, outbox_path)
    response = await client.get("/api/v1/watchlist", headers=bearer(other))
    assert response.json() == {"items": [], "next_cursor": None}

    assert_error(await client.put("/api/v1/watchlist/999999999", headers=me), 404, "not_found")
    assert_error(await client.delete("/api/v1/watchlist/999999999", headers=me), 404, "not_found")
    assert_error(await client.put(f"/api/v1/watchlist/{markets[0]['id']}"), 401, "unauthorized")
    assert_error(await client.get("/api/v1/watchlist"), 401, "unauthorized")
    response = await client.get("/api/v1/watchlist", params={"cursor": "abc"}, headers=me)
    assert_error(response, 400, "validation_error")


# --- market edit ---------------------------------------------------------------------------------


async def test_admin_edits_a_market_and_search_follows(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    old_word, new_word, category = word(), word(), word()
    market = await create_market(client, admin, title=f"Will {old_word} happen?")
    market_id = market["id"]
    later = (datetime.fromisoformat(market["closes_at"]) + timedelta(days=3)).isoformat()
    response = await client.patch(
        f"/api/v1/admin/markets/{market_id}",
        json={
            "title": f"Will {new_word} happen?",
            "description": "Edited.",
            "category": category,
            "rules": "By the book.",
            "closes_at": later,
        },
        headers=admin,
    )
    assert response.status_code == 200, response.text
    edited = response.json()
    assert (edited["title"], edited["description"], edited["category"], edited["rules"]) == (
        f"Will {new_word} happen?",
        "Edited.",
        category,
        "By the book.",
    )
    assert datetime.fromisoformat(edited["closes_at"]) == datetime.fromisoformat(later)
    assert [m["id"] for m in await listed(client, q=new_word)] == [market_id]
    assert await listed(client, q=old_word) == []
    assert [m["id"] for m in await listed(client, category=category)] == [market_id]
    # A field left out stays.
    response = await client.patch(
        f"/api/v1/admin/markets/{market_id}", json={"rules": "Stricter."}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert (response.json()["title"], response.json()["rules"]) == (edited["title"], "Stricter.")
    # The engine took the new closes_at: orders still go in.
    trader = await funded_trader(client, outbox_path)
    await trader.placed(market_id, "yes", "buy", 1, 500)


async def test_market_edit_refusals(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    market = await create_market(client, admin)
    path = f"/api/v1/admin/markets/{market['id']}"
    closes_at = datetime.fromisoformat(market["closes_at"])
    for bad in (
        {"closes_at": (closes_at - timedelta(hours=1)).isoformat()},
        {"closes_at": closes_at.isoformat()},
        {"title": ""},
        {"tick": 10},
        {"closes_at": "2030-01-01T00:00:00"},
    ):
        assert_error(await client.patch(path, json=bad, headers=admin), 422, "validation_error")
    assert_error(
        await client.patch("/api/v1/admin/markets/999999999", json={"title": "x"}, headers=admin),
        404,
        "not_found",
    )
    token, _ = await login(client, outbox_path)
    assert_error(
        await client.patch(path, json={"title": "x"}, headers=bearer(token)), 403, "forbidden"
    )
    assert_error(await client.patch(path, json={"title": "x"}), 401, "unauthorized")

    response = await client.post(f"{path}/close", headers=admin)
    assert response.status_code == 200, response.text
    later = (closes_at + timedelta(days=1)).isoformat()
    for body in ({"title": "Too late"}, {"closes_at": later}):
        assert_error(await client.patch(path, json=body, headers=admin), 409, "invalid_transition")
    response = await client.post(f"{path}/resolve", json={"outcome": "void"}, headers=admin)
    assert response.status_code == 200, response.text
    assert_error(
        await client.patch(path, json={"title": "Too late"}, headers=admin),
        409,
        "invalid_transition",
    )


async def test_every_sort_combines_with_a_search(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    word = f"zq{uuid.uuid4().hex[:8]}"
    made = [await create_market(client, admin, title=f"Will {word} happen {n}") for n in range(3)]
    for sort in ("new", "closing", "volume"):
        response = await client.get("/api/v1/markets", params={"q": word, "sort": sort})
        assert response.status_code == 200, response.text
        assert {m["id"] for m in response.json()["items"]} == {m["id"] for m in made}
