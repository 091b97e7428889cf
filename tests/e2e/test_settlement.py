"""Market lifecycle and resolution over HTTP (SPEC §5): pause, resume, close with every
lock released exactly, the automatic close at `closes_at`, and exact payouts for
`yes`, `no` and `void`, with and without a settlement fee, to holders who minted,
bought in a transfer and partly sold (merged)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from litestar import Litestar

from tests.conftest import assert_error, bearer, login
from tests.trading import Trader, create_market, engine_differences, escrow, funded_trader

AUTO_CLOSE_WITHIN_S = 5  # SPEC §10
POLL_S = 0.1


async def admin_action(
    client: httpx.AsyncClient, admin: dict[str, str], market_id: int, action: str, **body: object
) -> httpx.Response:
    return await client.post(
        f"/api/v1/admin/markets/{market_id}/{action}", json=body or None, headers=admin
    )


async def test_pause_stops_orders_and_matching_and_allows_cancels(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    market = (await create_market(client, admin))["id"]
    buyer = await funded_trader(client, outbox_path)
    bid = await buyer.placed(market, "yes", "buy", 2, 400)
    kept = await buyer.placed(market, "yes", "buy", 1, 300)

    paused = await admin_action(client, admin, market, "pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert (await client.get(f"/api/v1/markets/{market}")).json()["status"] == "paused"

    seller = await funded_trader(client, outbox_path)
    # A NO buy at 600 would cross the YES bid at 400: no new orders while paused.
    assert_error(await seller.order(market, "no", "buy", 2, 600), 409, "market_not_open")
    canceled = await client.delete(f"/api/v1/orders/{bid['id']}", headers=buyer.headers)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert_error(await admin_action(client, admin, market, "pause"), 409, "invalid_transition")

    resumed = await admin_action(client, admin, market, "resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "open"
    assert_error(await admin_action(client, admin, market, "resume"), 409, "invalid_transition")
    # Trading again: the resting order paused with the market now trades.
    crossing = await seller.placed(market, "no", "buy", 1, 700)
    assert crossing["status"] == "filled"
    assert crossing["fills"][0]["trade_id"] > 0
    resting = await client.get(f"/api/v1/orders/{kept['id']}", headers=buyer.headers)
    assert resting.json()["status"] == "filled"


async def test_close_cancels_every_order_and_releases_each_lock_exactly(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path, db: asyncpg.Pool,
    app: Litestar,
) -> None:  # fmt: skip
    market = (await create_market(client, admin))["id"]
    other = (await create_market(client, admin))["id"]
    yes = await funded_trader(client, outbox_path, deposit=10_000)
    no = await funded_trader(client, outbox_path, deposit=10_000)
    await yes.placed(market, "yes", "buy", 10, 600)
    await no.placed(market, "no", "buy", 10, 400)  # mint: 10 YES and 10 NO
    open_orders = [
        (yes, await yes.placed(market, "yes", "buy", 3, 250)),  # locks 750
        (yes, await yes.placed(market, "yes", "sell", 4, 900)),  # locks 4 YES
        (no, await no.placed(market, "no", "buy", 2, 350)),  # locks 700
        (no, await no.placed(market, "no", "sell", 5, 800)),  # locks 5 NO
    ]
    elsewhere = await yes.placed(other, "yes", "buy", 1, 100)  # not touched by the close
    before = {t.id: await t.wallet() for t in (yes, no)}
    assert (before[yes.id]["locked"], before[no.id]["locked"]) == (850, 700)

    closed = await admin_action(client, admin, market, "close")
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
    for trader in (yes, no):
        wallet = await trader.wallet()
        assert wallet["balance"] == before[trader.id]["balance"]  # nothing paid, nothing lost
        assert wallet["locked"] == (100 if trader is yes else 0)
    for owner, order in open_orders:
        got = (await client.get(f"/api/v1/orders/{order['id']}", headers=owner.headers)).json()
        assert (got["status"], got["remaining_quantity"]) == ("canceled", 0)
    position = await yes.portfolio_position(market)
    assert (position["yes_quantity"], position["yes_locked"]) == (10, 0)
    assert (await client.get(f"/api/v1/orders/{elsewhere['id']}", headers=yes.headers)).json()[
        "status"
    ] == "open"
    assert await escrow(db, market) == 10_000  # contracts stay until resolution
    assert_error(await yes.order(market, "yes", "buy", 1, 500), 409, "market_not_open")
    assert_error(await admin_action(client, admin, market, "close"), 409, "invalid_transition")
    assert_error(await admin_action(client, admin, market, "pause"), 409, "invalid_transition")
    assert_error(await admin_action(client, admin, market, "resume"), 409, "invalid_transition")
    assert await engine_differences(app, db) == []


async def test_lifecycle_paths_need_an_admin_and_a_known_market(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    market = (await create_market(client, admin))["id"]
    token, _ = await login(client, outbox_path)
    for action in ("pause", "resume", "close"):
        assert_error(await admin_action(client, bearer(token), market, action), 403, "forbidden")
        assert_error(await admin_action(client, admin, 987_654_321, action), 404, "not_found")
    assert_error(
        await admin_action(client, bearer(token), market, "resolve", outcome="yes"),
        403,
        "forbidden",
    )
    assert_error(
        await admin_action(client, admin, 987_654_321, "resolve", outcome="yes"), 404, "not_found"
    )
    for bad in ({"outcome": "maybe"}, {}, {"outcome": "yes", "extra": 1}):
        response = await client.post(
            f"/api/v1/admin/markets/{market}/resolve", json=bad, headers=admin
        )
        assert response.status_code in (400, 422), response.text
        assert response.json()["error"]["code"] == "validation_error"
    assert (await client.get(f"/api/v1/markets/{market}")).json()["status"] == "open"


async def test_market_closes_by_itself_at_closes_at(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    closes_at = datetime.now(UTC) + timedelta(seconds=2)
    market = (await create_market(client, admin, closes_at=closes_at.isoformat()))["id"]
    trader = await funded_trader(client, outbox_path)
    order = await trader.placed(market, "yes", "buy", 2, 500)
    assert (await trader.wallet())["locked"] == 1000
    deadline = closes_at + timedelta(seconds=AUTO_CLOSE_WITHIN_S)
    status = "open"
    while datetime.now(UTC) < deadline:
        status = (await client.get(f"/api/v1/markets/{market}")).json()["status"]
        if status == "closed":
            break
        await asyncio.sleep(POLL_S)
    assert status == "closed", f"still {status} {AUTO_CLOSE_WITHIN_S} s after closes_at"
    assert datetime.now(UTC) >= closes_at
    got = await client.get(f"/api/v1/orders/{order['id']}", headers=trader.headers)
    assert got.json()["status"] == "canceled"
    assert (await trader.wallet())["locked"] == 0
    assert_error(await trader.order(market, "yes", "buy", 1, 500), 409, "market_not_open")


class Holders:
    """A market where A and B minted, C bought YES from A in a transfer, and A and B
    merged part of theirs; D and C still have orders open when it resolves."""

    def __init__(self, a: Trader, b: Trader, c: Trader, d: Trader) -> None:
        self.a, self.b, self.c, self.d = a, b, c, d

    # Contracts and cost basis held at resolution, and P&L realised before it.
    HELD = {"a": (4, 0, 2400, 200 + 200), "b": (0, 8, 3200, -200), "c": (4, 0, 2600, 0)}


async def trade_holders(client: httpx.AsyncClient, outbox_path: Path, market: int) -> Holders:
    a = await funded_trader(client, outbox_path, deposit=10_000)
    b = await funded_trader(client, outbox_path, deposit=5_000)
    c = await funded_trader(client, outbox_path, deposit=3_000)
    d = await funded_trader(client, outbox_path)
    await a.placed(market, "yes", "buy", 10, 600)
    assert (await b.placed(market, "no", "buy", 10, 400))["fills"][0]["kind"] == "mint"
    await a.placed(market, "yes", "sell", 4, 650)
    assert (await c.placed(market, "yes", "buy", 4, 650))["fills"][0]["kind"] == "transfer"
    await a.placed(market, "yes", "sell", 2, 700)
    assert (await b.placed(market, "no", "sell", 2, 300))["fills"][0]["kind"] == "merge"
    await d.placed(market, "yes", "buy", 5, 100)  # open at resolution: lock 500 released
    await c.placed(market, "yes", "sell", 1, 950)  # open: 1 YES locked, then paid anyway
    return Holders(a, b, c, d)


@pytest.mark.parametrize(
    ("outcome", "fee_bps"), [("yes", 0), ("yes", 250), ("no", 0), ("no", 100), ("void", 333)]
)
async def test_resolution_pays_every_holder_exactly(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path, db: asyncpg.Pool,
    app: Litestar, outcome: str, fee_bps: int,
) -> None:  # fmt: skip
    market = (await create_market(client, admin, settlement_fee_bps=fee_bps))["id"]
    holders = await trade_holders(client, outbox_path, market)
    assert await escrow(db, market) == 8 * 1000
    traders = {"a": holders.a, "b": holders.b, "c": holders.c, "d": holders.d}
    before = {name: (await t.wallet())["balance"] for name, t in traders.items()}
    fees_before = await db.fetchval("SELECT balance FROM accounts WHERE id = 3")
    if outcome == "void":  # resolving a paused market closes it first, like an open one
        assert (await admin_action(client, admin, market, "pause")).status_code == 200

    resolved = await admin_action(client, admin, market, "resolve", outcome=outcome)
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert (body["status"], body["outcome"]) == ("resolved", outcome)
    assert body["resolved_at"] is not None

    yes_value = {"yes": 1000, "no": 0, "void": 500}[outcome]
    fees = 0
    for name, trader in traders.items():
        yes, no, cost, realized_before = Holders.HELD.get(name, (0, 0, 0, 0))
        gross = yes * yes_value + no * (1000 - yes_value)
        fee = gross * fee_bps // 10_000
        fees += fee
        wallet = await trader.wallet()
        assert (wallet["balance"], wallet["locked"]) == (before[name] + gross - fee, 0), name
        position = await trader.portfolio_position(market)
        if name == "d":
            assert position is None  # never held anything
            continue
        assert (
            position["status"],
            position["yes_quantity"],
            position["no_quantity"],
            position["payout"],
            position["realized_pnl"],
            position["invested"],
        ) == ("resolved", 0, 0, gross, realized_before + gross - fee - cost, 0), name
        payouts = await db.fetch(
            "SELECT t.kind, t.amount FROM transfers t JOIN accounts a "
            "ON a.id IN (t.debit_account_id, t.credit_account_id) "
            "WHERE a.user_id = $1 AND t.ref_type = 'market' AND t.ref_id = $2 ORDER BY t.id",
            trader.id,
            market,
        )
        expected = ([("payout", gross)] if gross else []) + ([("fee", fee)] if fee else [])
        assert [(r["kind"], r["amount"]) for r in payouts] == expected, name
    assert await escrow(db, market) == 0
    assert await db.fetchval("SELECT balance FROM accounts WHERE id = 3") == fees_before + fees
    assert_error(
        await admin_action(client, admin, market, "resolve", outcome=outcome),
        409,
        "market_resolved",
    )
    assert_error(
        await admin_action(client, admin, market, "resolve", outcome="no"), 409, "market_resolved"
    )
    assert_error(await admin_action(client, admin, market, "close"), 409, "invalid_transition")
    assert_error(await holders.a.order(market, "yes", "buy", 1, 500), 409, "market_not_open")
    listed = await client.get("/api/v1/markets", params={"status": "resolved", "limit": 200})
    assert market in [m["id"] for m in listed.json()["items"]]
    assert await engine_differences(app, db) == []


async def test_a_market_nobody_traded_resolves_with_nothing_to_pay(
    client: httpx.AsyncClient, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    market = (await create_market(client, admin))["id"]
    assert (await admin_action(client, admin, market, "close")).status_code == 200
    resolved = await admin_action(client, admin, market, "resolve", outcome="no")
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    assert await escrow(db, market) == 0
    count = await db.fetchval(
        "SELECT count(*) FROM transfers WHERE ref_type = 'market' AND ref_id = $1", market
    )
    assert count == 0


async def test_market_list_carries_prices_and_volume_as_trades_commit(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    category = f"cat-{time.monotonic_ns()}"
    market = (await create_market(client, admin, category=category))["id"]
    a = await funded_trader(client, outbox_path, deposit=10_000)
    b = await funded_trader(client, outbox_path, deposit=10_000)
    await a.placed(market, "yes", "buy", 5, 550)
    await b.placed(market, "no", "buy", 3, 450)  # mint 3 at 550; A's bid keeps 2
    await b.placed(market, "no", "buy", 1, 300)  # rests: the NO bid
    await a.placed(market, "yes", "sell", 1, 650)  # rests: a YES ask at 650
    await b.placed(market, "yes", "buy", 1, 650)  # transfer 1 at 650
    listed = await client.get("/api/v1/markets", params={"category": category})
    (item,) = listed.json()["items"]
    assert (item["id"], item["last_price"], item["volume"]) == (market, 650, 4)
    assert (item["best_yes_bid"], item["best_no_bid"]) == (550, 300)
    assert (await client.get(f"/api/v1/markets/{market}")).json() == item
