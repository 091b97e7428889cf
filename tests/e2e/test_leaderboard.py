"""The leaderboard (SPEC §12): realised P&L per trader in a period, best first, from
the committed record of every sale, merge and resolution, so it sums back to the
portfolios; traders without a display name show as trader-<id>."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx

from tests.trading import Trader, create_market, funded_trader


async def board(client: httpx.AsyncClient, period: str, limit: int = 200) -> list[dict]:
    """Every entry of the period's leaderboard, page by page."""
    entries: list[dict] = []
    cursor = None
    while True:
        params = {"period": period, "limit": limit} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/api/v1/leaderboard", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        entries += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return entries


def entry_of(entries: list[dict], trader: Trader) -> dict | None:
    found = [e for e in entries if e["display_name"] in (f"trader-{trader.id}", f"name{trader.id}")]
    assert len(found) <= 1
    return found[0] if found else None


async def test_realised_profit_ranks_traders_and_sums_back_to_their_portfolios(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    market_id = (await create_market(client, admin))["id"]
    seller, buyer, last = [await funded_trader(client, outbox_path, 10_000) for _ in range(3)]
    split = await seller.client.post(
        f"/api/v1/markets/{market_id}/split", json={"quantity": 4}, headers=seller.headers
    )
    assert split.status_code == 201, split.text
    await seller.placed(market_id, "yes", "sell", 4, 700)
    await buyer.placed(market_id, "yes", "buy", 4, 700)  # seller realises 4 x (700 - 500)
    await buyer.placed(market_id, "yes", "sell", 2, 800)
    await last.placed(market_id, "yes", "buy", 2, 800)  # buyer realises 2 x (800 - 700)
    await db.execute(
        "UPDATE users SET display_name = $2 WHERE id = $1", seller.id, f"name{seller.id}"
    )

    everything = await board(client, "all", limit=7)  # small pages: every entry exactly once
    ranks = [e["rank"] for e in everything]
    assert ranks == list(range(1, len(everything) + 1))
    assert [e["realized_pnl"] for e in everything] == sorted(
        (e["realized_pnl"] for e in everything), reverse=True
    )
    seller_entry, buyer_entry = entry_of(everything, seller), entry_of(everything, buyer)
    assert seller_entry is not None and buyer_entry is not None
    assert (seller_entry["display_name"], seller_entry["realized_pnl"], seller_entry["volume"]) == (
        f"name{seller.id}",
        800,
        4,
    )
    assert (buyer_entry["display_name"], buyer_entry["realized_pnl"], buyer_entry["volume"]) == (
        f"trader-{buyer.id}",
        200,
        6,
    )
    assert entry_of(everything, last) is None  # realised nothing
    for trader in (seller, buyer):
        totals = (await client.get("/api/v1/portfolio", headers=trader.headers)).json()["totals"]
        assert totals["realized_pnl"] == entry_of(everything, trader)["realized_pnl"]  # type: ignore[index]
    # The whole board sums back to the positions it was recorded from.
    recorded = await db.fetchval("SELECT coalesce(sum(amount), 0) FROM realized_pnl")
    held = await db.fetchval("SELECT coalesce(sum(realized_pnl), 0) FROM positions")
    assert recorded == held == sum(e["realized_pnl"] for e in everything)


async def test_periods_count_only_what_was_realised_in_them(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    market_id = (await create_market(client, admin))["id"]
    trader, buyer = [await funded_trader(client, outbox_path, 10_000) for _ in range(2)]
    for action in ("split", "merge"):  # at the half-payout basis this realises nothing
        response = await trader.client.post(
            f"/api/v1/markets/{market_id}/{action}", json={"quantity": 3}, headers=trader.headers
        )
        assert response.status_code == 201, response.text
    assert entry_of(await board(client, "all"), trader) is None
    await trader.client.post(
        f"/api/v1/markets/{market_id}/split", json={"quantity": 2}, headers=trader.headers
    )
    await trader.placed(market_id, "yes", "sell", 2, 700)
    await buyer.placed(market_id, "yes", "buy", 2, 700)  # realises 2 x (700 - 500)
    for period in ("7d", "30d", "all"):
        assert entry_of(await board(client, period), trader)["realized_pnl"] == 400  # type: ignore[index]
    await db.execute(
        "UPDATE realized_pnl SET at = now() - interval '8 days' WHERE user_id = $1", trader.id
    )
    assert entry_of(await board(client, "7d"), trader) is None
    assert entry_of(await board(client, "30d"), trader)["realized_pnl"] == 400  # type: ignore[index]
    bad = await client.get("/api/v1/leaderboard", params={"period": "1y"})
    assert bad.status_code in (400, 422) and bad.json()["error"]["code"] == "validation_error"
