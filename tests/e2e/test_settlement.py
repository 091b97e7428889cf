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

from probo.app import create_app
from probo.markets import MarketService
from probo.markets.scheduler import TICK_S
from probo.services import services_of
from probo.web import ApiError
from tests.conftest import (
    assert_error,
    bearer,
    login,
    make_settings,
    new_phone,
    serving,
)
from tests.trading import (
    Trader,
    create_market,
    engine_differences,
    escrow,
    funded_trader,
    live_audit,
)

AUTO_CLOSE_WITHIN_S = 5  # SPEC §10
POLL_S = 0.1
ORDER_WAVES_MAX = 30  # waves of orders sent while a resolution is on its way


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


CLEAN_AUDIT = {"ok": True, "breaches": []}


@pytest.mark.parametrize(
    ("outcome", "fee_bps"),
    # 333 bps floors: 4000 -> 133 (of 133.2), 8000 -> 266 (of 266.4), 2000 -> 66 (of 66.6).
    [("yes", 0), ("yes", 250), ("yes", 333), ("no", 0), ("no", 100), ("no", 333), ("void", 0),
     ("void", 333)],
)  # fmt: skip
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
    assert await escrow(db, market) == 0
    assert await live_audit(client, admin) == CLEAN_AUDIT


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


async def minted(
    client: httpx.AsyncClient, outbox_path: Path, market: int
) -> tuple[Trader, Trader]:
    """Two holders: YES bought 3 @600 and NO 3 @400, minted together (escrow 3000)."""
    yes = await funded_trader(client, outbox_path, deposit=5_000)
    no = await funded_trader(client, outbox_path, deposit=5_000)
    await yes.placed(market, "yes", "buy", 3, 600)
    assert (await no.placed(market, "no", "buy", 3, 400))["fills"][0]["kind"] == "mint"
    return yes, no


async def payouts_of(db: asyncpg.Pool, market: int) -> list[tuple[int | None, int]]:
    """(user paid, amount) of every payout transfer of the market's resolution."""
    rows = await db.fetch(
        "SELECT a.user_id, t.amount FROM transfers t JOIN accounts a ON a.id = t.credit_account_id "
        "WHERE t.kind = 'payout' AND t.ref_type = 'market' AND t.ref_id = $1 ORDER BY t.id",
        market,
    )
    return [(r["user_id"], r["amount"]) for r in rows]


async def test_a_resolution_the_engine_never_took_can_be_asked_again(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path, db: asyncpg.Pool,
    app: Litestar,
) -> None:  # fmt: skip
    market = (await create_market(client, admin))["id"]
    yes, no = await minted(client, outbox_path, market)
    engine = services_of(app).engine
    engine.ready = False  # the engine takes no command: the resolve answers 503
    try:
        refused = await admin_action(client, admin, market, "resolve", outcome="yes")
    finally:
        engine.ready = True
    assert_error(refused, 503, "unavailable")
    assert await db.fetchval("SELECT resolving FROM markets WHERE id = $1", market) is None
    await asyncio.sleep(2 * TICK_S)  # the market clock does not pay what nobody confirmed
    assert (await client.get(f"/api/v1/markets/{market}")).json()["status"] == "open"
    assert await payouts_of(db, market) == []

    resolved = await admin_action(client, admin, market, "resolve", outcome="no")
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["status"], resolved.json()["outcome"]) == ("resolved", "no")
    assert await payouts_of(db, market) == [(no.id, 3000)]
    assert await escrow(db, market) == 0
    assert await live_audit(client, admin) == CLEAN_AUDIT


async def test_a_resolution_queued_but_not_confirmed_in_time_stays_and_commits(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path, db: asyncpg.Pool,
    app: Litestar,
) -> None:  # fmt: skip
    market = (await create_market(client, admin))["id"]
    yes, _ = await minted(client, outbox_path, market)
    # The same engine and database, with no time at all to wait for the commit.
    impatient = MarketService(
        pool=services_of(app).pool,
        engine=services_of(app).engine,
        hub=services_of(app).hub,
        ack_timeout_ms=0,
    )
    with pytest.raises(ApiError) as timed_out:
        await impatient.resolve(market, "yes")
    assert (timed_out.value.status_code, timed_out.value.code) == (503, "unavailable")
    assert await db.fetchval("SELECT resolving FROM markets WHERE id = $1", market) == "yes"
    assert_error(
        await admin_action(client, admin, market, "resolve", outcome="no"), 409, "market_resolved"
    )
    body = await market_when(client, market, "resolved", within_s=AUTO_CLOSE_WITHIN_S)
    assert body["outcome"] == "yes"
    assert await payouts_of(db, market) == [(yes.id, 3000)]
    assert await live_audit(client, admin) == CLEAN_AUDIT


async def test_the_market_clock_finishes_a_recorded_resolution(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path, db: asyncpg.Pool
) -> None:
    """A resolution recorded but never paid (its request died, its clear failed) is
    finished by the running process, not only by the next restart."""
    market = (await create_market(client, admin, settlement_fee_bps=100))["id"]
    yes, no = await minted(client, outbox_path, market)
    await db.execute("UPDATE markets SET resolving = 'void' WHERE id = $1", market)
    body = await market_when(client, market, "resolved", within_s=AUTO_CLOSE_WITHIN_S)
    assert body["outcome"] == "void"
    assert sorted(await payouts_of(db, market)) == sorted([(yes.id, 1500), (no.id, 1500)])
    assert await escrow(db, market) == 0
    assert await live_audit(client, admin) == CLEAN_AUDIT


async def market_when(
    client: httpx.AsyncClient, market: int, status: str, *, within_s: float
) -> dict:
    """The market once it has `status`, polled for at most `within_s`."""
    deadline = time.monotonic() + within_s
    body = (await client.get(f"/api/v1/markets/{market}")).json()
    while body["status"] != status and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        body = (await client.get(f"/api/v1/markets/{market}")).json()
    assert body["status"] == status, f"still {body['status']} after {within_s} s"
    return body


async def test_a_resolution_that_fails_does_not_stop_the_market_clock(
    scratch_database: str, server_urls: tuple[str, str], redis_prefix: str, outbox_path: Path
) -> None:
    admin_phone = new_phone()
    settings = make_settings(
        scratch_database,
        server_urls[1],
        redis_prefix,
        outbox_path,
        admin_phones=frozenset({admin_phone}),
    )
    async with serving(create_app(settings)) as client:
        token, _ = await login(client, outbox_path, admin_phone)
        admin = bearer(token)
        broken = (await create_market(client, admin))["id"]
        await minted(client, outbox_path, broken)
        assert (await admin_action(client, admin, broken, "close")).status_code == 200
        due = [(await create_market(client, admin))["id"] for _ in range(3)]
    # While stopped: the broken market's positions claim a contract its escrow does not
    # back (so the engine refuses to pay it, with an error that is not an ApiError), its
    # resolution is recorded, and the other markets' closing time comes.
    async with asyncpg.create_pool(scratch_database, min_size=1, max_size=2) as db:
        await db.execute(
            "UPDATE positions SET yes_quantity = yes_quantity + 1 "
            "WHERE market_id = $1 AND yes_quantity > 0",
            broken,
        )
        await db.execute("UPDATE markets SET resolving = 'yes' WHERE id = $1", broken)
        closes_at = await db.fetchval(
            "UPDATE markets SET closes_at = now() + interval '2 seconds' "
            "WHERE id = ANY($1::bigint[]) RETURNING closes_at",
            due,
        )
        async with serving(create_app(settings)) as client:
            for market in due:
                left_s = (closes_at - datetime.now(UTC)).total_seconds() + AUTO_CLOSE_WITHIN_S
                await market_when(client, market, "closed", within_s=left_s)
            assert (await client.get(f"/api/v1/markets/{broken}")).json()["status"] == "closed"
            assert await payouts_of(db, broken) == []


@pytest.mark.parametrize("outcomes", [("yes", "yes"), ("yes", "no")])
async def test_two_resolutions_at_once_pay_once(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path, db: asyncpg.Pool,
    outcomes: tuple[str, str],
) -> None:  # fmt: skip
    market = (await create_market(client, admin, settlement_fee_bps=200))["id"]
    yes, no = await minted(client, outbox_path, market)
    answers = await asyncio.gather(
        *(admin_action(client, admin, market, "resolve", outcome=o) for o in outcomes)
    )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    (won,) = [a for a in answers if a.status_code == 200]
    (lost,) = [a for a in answers if a.status_code == 409]
    assert_error(lost, 409, "market_resolved")
    outcome = won.json()["outcome"]
    assert (await client.get(f"/api/v1/markets/{market}")).json()["outcome"] == outcome
    winner = yes if outcome == "yes" else no
    assert await payouts_of(db, market) == [(winner.id, 3000)]
    fees = await db.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM transfers "
        "WHERE kind = 'fee' AND ref_type = 'market' AND ref_id = $1",
        market,
    )
    assert fees == 60  # 2% of the one payout
    assert await escrow(db, market) == 0
    assert await live_audit(client, admin) == CLEAN_AUDIT


async def test_resolving_while_orders_are_in_flight(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path, db: asyncpg.Pool,
    app: Litestar,
) -> None:  # fmt: skip
    """Each order either committed before the resolution (and was settled by it: filled,
    or canceled by the close) or is refused with market_not_open; nobody is paid for a
    contract they do not hold, and nothing stays locked."""
    market = (await create_market(client, admin))["id"]
    traders = [await funded_trader(client, outbox_path, deposit=20_000) for _ in range(8)]
    await traders[0].placed(market, "yes", "buy", 2, 500)  # resting before the race
    balances = {t.id: (await t.wallet())["balance"] for t in traders}
    # Waves of orders (YES and NO buys at 500, which mint when they meet) go on while
    # the resolution is on its way, and one wave more once it has answered.
    resolution = asyncio.create_task(admin_action(client, admin, market, "resolve", outcome="yes"))
    placed: list[httpx.Response] = []
    for wave in range(ORDER_WAVES_MAX):
        resolved_before = resolution.done()
        placed += await asyncio.gather(
            *(
                t.order(market, "yes" if n % 2 else "no", "buy", 1 + (n + wave) % 3, 500)
                for n, t in enumerate(traders)
            )
        )
        if resolved_before:
            break
    resolved = await resolution
    assert resolved.status_code == 200, resolved.text
    assert resolved_before, "the resolution outlasted every wave"
    for answer in placed:
        if answer.status_code != 201:
            assert_error(answer, 409, "market_not_open")
    statuses = {a.status_code for a in placed}
    assert statuses == {201, 409}, statuses  # some before the resolution, some after
    # Every order Postgres holds committed before the resolution, and the resolution
    # settled it: filled, or canceled by the close with nothing left working.
    yes_held = dict.fromkeys(balances, 0)
    spent = dict.fromkeys(balances, 0)
    stored = 0
    for trader in traders:
        mine = await client.get(
            "/api/v1/orders", params={"market_id": market, "limit": 200}, headers=trader.headers
        )
        for order in mine.json()["items"]:
            stored += 1
            assert order["status"] in ("filled", "canceled"), order
            assert order["remaining_quantity"] == 0, order
            spent[trader.id] += 500 * order["filled_quantity"]
            if order["outcome"] == "yes":
                yes_held[trader.id] += order["filled_quantity"]
    assert stored == 1 + sum(a.status_code == 201 for a in placed)
    expected = [(user, 1000 * held) for user, held in yes_held.items() if held]
    assert sorted(await payouts_of(db, market)) == sorted(expected)
    for trader in traders:
        wallet = await trader.wallet()
        want = balances[trader.id] - spent[trader.id] + 1000 * yes_held[trader.id]
        assert (wallet["balance"], wallet["locked"]) == (want, 0), trader.id
    assert await escrow(db, market) == 0
    assert await engine_differences(app, db) == []
    assert await live_audit(client, admin) == CLEAN_AUDIT


async def test_a_closed_market_is_marked_at_its_last_trade(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    """No book once closed: positions are valued at the last trade's price (YES at it,
    NO at 1000 minus it) until the resolution, not at 0."""
    market = (await create_market(client, admin))["id"]
    a = await funded_trader(client, outbox_path, deposit=5_000)
    b = await funded_trader(client, outbox_path, deposit=5_000)
    c = await funded_trader(client, outbox_path, deposit=5_000)
    await a.placed(market, "yes", "buy", 4, 600)
    await b.placed(market, "no", "buy", 4, 400)  # mint 4 at YES 600
    await a.placed(market, "yes", "sell", 1, 700)
    await c.placed(market, "yes", "buy", 1, 700)  # the last trade: YES 700
    assert (await admin_action(client, admin, market, "close")).status_code == 200

    # (contracts, invested, mark value) of each: A kept 3 YES of cost 600, B 4 NO of
    # cost 400, C 1 YES of cost 700.
    for trader, yes, no, invested, mark in (
        (a, 3, 0, 1800, 3 * 700),
        (b, 0, 4, 1600, 4 * 300),
        (c, 1, 0, 700, 700),
    ):
        position = await trader.portfolio_position(market)
        assert position is not None
        assert (
            position["status"],
            position["yes_quantity"],
            position["no_quantity"],
            position["invested"],
            position["mark_value"],
            position["unrealized_pnl"],
        ) == ("closed", yes, no, invested, mark, mark - invested)


async def test_orders_are_refused_once_closes_at_has_passed(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path, db: asyncpg.Pool
) -> None:
    """Refused from `closes_at` on, without waiting for the market clock to close it."""
    closes_at = datetime.now(UTC) + timedelta(seconds=1)
    market = (await create_market(client, admin, closes_at=closes_at.isoformat()))["id"]
    trader = await funded_trader(client, outbox_path)
    resting = await trader.placed(market, "yes", "buy", 1, 500)
    # Keep the market clock away: only the closing time the engine holds may refuse.
    await db.execute(
        "UPDATE markets SET closes_at = now() + interval '1 day' WHERE id = $1", market
    )
    await asyncio.sleep(max(0.0, (closes_at - datetime.now(UTC)).total_seconds()) + POLL_S)
    try:
        assert_error(await trader.order(market, "yes", "buy", 1, 500), 409, "market_not_open")
        assert_error(await trader.order(market, "no", "buy", 1, 400), 409, "market_not_open")
        canceled = await client.delete(f"/api/v1/orders/{resting['id']}", headers=trader.headers)
        assert canceled.status_code == 200, canceled.text  # cancels still work
    finally:
        assert (await admin_action(client, admin, market, "close")).status_code == 200
