"""Split and merge (SPEC §12): cash into a market's escrow for YES + NO pairs and back,
through the market's queue like orders, answered after commit, with `split` / `merge`
transfers; §3 invariant 4 holds after every step and the engine equals Postgres."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx
from litestar import Litestar

from tests.conftest import assert_error
from tests.trading import (
    Trader,
    create_market,
    engine_differences,
    escrow,
    funded_trader,
    live_audit,
)


async def pairs(trader: Trader, market_id: int, action: str, quantity: object) -> httpx.Response:
    return await trader.client.post(
        f"/api/v1/markets/{market_id}/{action}", json={"quantity": quantity}, headers=trader.headers
    )


async def test_split_then_merge_moves_cash_through_the_escrow_and_back(
    client: httpx.AsyncClient,
    outbox_path: Path,
    admin: dict[str, str],
    app: Litestar,
    db: asyncpg.Pool,
) -> None:
    market_id = (await create_market(client, admin))["id"]
    trader = await funded_trader(client, outbox_path, 10_000)  # 11,500 in all
    split = await pairs(trader, market_id, "split", 5)
    assert split.status_code == 201, split.text
    assert split.json() == {
        "market_id": market_id,
        "quantity": 5,
        "yes_quantity": 5,
        "no_quantity": 5,
        "balance": 6500,
        "available": 6500,
    }
    assert await escrow(db, market_id) == 5000
    position = await trader.portfolio_position(market_id)
    assert (position["yes_quantity"], position["no_quantity"], position["invested"]) == (5, 5, 5000)

    merged = await pairs(trader, market_id, "merge", 2)
    assert merged.status_code == 201, merged.text
    assert (merged.json()["yes_quantity"], merged.json()["balance"]) == (3, 8500)
    assert await escrow(db, market_id) == 3000
    kinds = await db.fetch(
        "SELECT kind, amount FROM transfers WHERE ref_type = 'market' AND ref_id = $1 ORDER BY id",
        market_id,
    )
    assert [(r["kind"], r["amount"]) for r in kinds] == [("split", 5000), ("merge", 2000)]
    position = await trader.portfolio_position(market_id)
    assert (position["yes_quantity"], position["invested"], position["realized_pnl"]) == (
        3,
        3000,
        0,
    )
    assert await engine_differences(app, db) == []
    assert (await live_audit(client, admin))["breaches"] == []


async def test_split_pairs_can_be_sold_and_what_is_locked_cannot_be_merged(
    client: httpx.AsyncClient,
    outbox_path: Path,
    admin: dict[str, str],
    app: Litestar,
    db: asyncpg.Pool,
) -> None:
    market_id = (await create_market(client, admin))["id"]
    maker = await funded_trader(client, outbox_path, 10_000)
    buyer = await funded_trader(client, outbox_path, 10_000)
    assert (await pairs(maker, market_id, "split", 4)).status_code == 201
    await maker.placed(market_id, "yes", "sell", 3, 700)  # locks 3 YES
    assert_error(await pairs(maker, market_id, "merge", 2), 422, "insufficient_position")
    assert (await pairs(maker, market_id, "merge", 1)).status_code == 201  # 1 unlocked pair
    await buyer.placed(market_id, "yes", "buy", 3, 700)  # buys the 3 YES
    position = await maker.portfolio_position(market_id)
    assert (position["yes_quantity"], position["no_quantity"]) == (0, 3)
    assert position["realized_pnl"] == 3 * (700 - 500)  # each split YES cost half the payout
    assert_error(await pairs(maker, market_id, "merge", 1), 422, "insufficient_position")
    assert await engine_differences(app, db) == []
    assert (await live_audit(client, admin))["breaches"] == []


async def test_split_and_merge_refusals(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    market_id = (await create_market(client, admin))["id"]
    trader = await funded_trader(client, outbox_path)  # 1,500
    assert_error(await pairs(trader, market_id, "split", 2), 422, "insufficient_funds")
    assert_error(await pairs(trader, market_id, "merge", 1), 422, "insufficient_position")
    for quantity in (0, -1, 100_001, 1.5, "2"):
        response = await pairs(trader, market_id, "split", quantity)
        assert response.status_code in (400, 422), response.text
        assert response.json()["error"]["code"] == "validation_error"
    assert_error(await pairs(trader, 999_999_999, "split", 1), 404, "not_found")
    paused = await client.post(f"/api/v1/admin/markets/{market_id}/pause", headers=admin)
    assert paused.status_code == 200
    assert_error(await pairs(trader, market_id, "split", 1), 409, "market_not_open")
    anonymous = await client.post(f"/api/v1/markets/{market_id}/split", json={"quantity": 1})
    assert_error(anonymous, 401, "unauthorized")
    assert (await trader.wallet())["balance"] == 1500
