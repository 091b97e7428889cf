"""MarketService against real Postgres, the real engine and ledger writer (SPEC §5,
§10): creation and its validation, the lifecycle open ⇄ paused → closed → resolved and
its error codes, resolution paying every holder out of the escrow less the settlement
fee, and the listing's pages. After money moves, the ledger's invariants hold and the
engine agrees with Postgres."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from probo.ledger import PLATFORM_FEES_ACCOUNT_ID
from probo.web import ApiError
from tests.services import (
    Services,
    balance,
    funded_user,
    ledger_problems,
    market_request,
    new_market,
    place,
    refused,
    warm_pool,
)

CLOSE_DUE_MAX = 50


async def escrow(services: Services, market_id: int) -> int:
    return await services.pool.fetchval(
        "SELECT balance FROM accounts WHERE market_id = $1", market_id
    )


async def fees_collected(services: Services) -> int:
    return await services.pool.fetchval(
        "SELECT balance FROM accounts WHERE id = $1", PLATFORM_FEES_ACCOUNT_ID
    )


async def market_count(services: Services) -> int:
    return await services.pool.fetchval("SELECT count(*) FROM markets")


# --- creation ----------------------------------------------------------------------------------


async def test_a_new_market_is_open_with_an_empty_escrow(services: Services) -> None:
    closes_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    market = await services.markets.create(
        market_request(title="Will it rain?", category="weather", closes_at=closes_at.isoformat())
    )
    assert (market.status, market.outcome, market.title, market.category) == (
        "open",
        None,
        "Will it rain?",
        "weather",
    )
    assert (market.tick, market.settlement_fee_bps, market.volume) == (50, 0, 0)
    assert market.closes_at == closes_at
    assert await services.markets.get(market.id) == market
    assert await escrow(services, market.id) == 0
    assert services.engine.exchange.markets[market.id].status == "open"


async def test_closes_at_in_any_zone_is_the_same_instant(services: Services) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    closes_at = datetime.now(india).replace(microsecond=0) + timedelta(days=1)
    market = await services.markets.create(market_request(closes_at=closes_at.isoformat()))
    assert market.closes_at == closes_at
    assert market.closes_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("tick", "fee_bps"), [(1, 0), (100, 2000), (25, 1)])
async def test_ticks_dividing_1000_and_fees_up_to_2000_bps_are_accepted(
    services: Services, tick: int, fee_bps: int
) -> None:
    market = await services.markets.create(market_request(tick=tick, settlement_fee_bps=fee_bps))
    assert (market.tick, market.settlement_fee_bps) == (tick, fee_bps)


@pytest.mark.parametrize(
    "fields",
    [
        {"tick": 3},
        {"tick": 30},
        {"tick": 64},
        {"closes_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
    ],
    ids=["tick-3", "tick-30", "tick-64", "closes_at-past"],
)
async def test_the_service_refuses_a_tick_not_dividing_1000_and_a_past_closes_at(
    services: Services, fields: dict[str, object]
) -> None:
    before = await market_count(services)
    error = await refused(services.markets.create(market_request(**fields)))
    assert (error.status_code, error.code) == (422, "validation_error")
    assert await market_count(services) == before


@pytest.mark.parametrize(
    "fields",
    [
        {"tick": 0},
        {"tick": 101},
        {"settlement_fee_bps": -1},
        {"settlement_fee_bps": 2001},
        {"closes_at": (datetime.now() + timedelta(days=1)).isoformat()},  # no zone
        {"title": ""},
    ],
    ids=["tick-0", "tick-101", "fee-negative", "fee-2001", "closes_at-without-zone", "no-title"],
)
def test_the_request_type_refuses_ranges_and_a_closes_at_without_a_zone(
    fields: dict[str, object],
) -> None:
    """These rules live in MarketCreate's constraints, checked where a request is
    decoded. MarketService.create trusts them: a MarketCreate built in code with tick 0
    fails there with ZeroDivisionError, a fee of 5000 bps with Postgres's CHECK, and a
    closes_at without a zone is read as the server's local time."""
    with pytest.raises(msgspec.ValidationError):
        market_request(**fields)


# --- lifecycle ---------------------------------------------------------------------------------


async def test_pause_and_resume_stop_and_restart_trading(services: Services) -> None:
    market = await new_market(services)
    buyer, seller = await funded_user(services, 5000), await funded_user(services, 5000)
    bid = await place(services, buyer, market, "yes", "buy", 2, 400)

    assert (await services.markets.pause(market)).status == "paused"
    error = await refused(place(services, seller, market, "no", "buy", 2, 600))
    assert (error.status_code, error.code) == (409, "market_not_open")
    error = await refused(services.markets.pause(market))
    assert (error.status_code, error.code) == (409, "invalid_transition")

    assert (await services.markets.resume(market)).status == "open"
    error = await refused(services.markets.resume(market))
    assert (error.status_code, error.code) == (409, "invalid_transition")
    crossing = await place(services, seller, market, "no", "buy", 2, 600)
    assert crossing.status == "filled"  # against the bid that waited through the pause
    assert (await services.trading.order(buyer, bid.id)).status == "filled"
    assert await ledger_problems(services) == []


async def test_close_cancels_every_order_and_releases_its_lock(services: Services) -> None:
    market = await new_market(services)
    yes, no = await funded_user(services, 10_000), await funded_user(services, 10_000)
    await place(services, yes, market, "yes", "buy", 10, 600)
    await place(services, no, market, "no", "buy", 10, 400)  # mint: 10 YES, 10 NO
    resting = [
        (yes, await place(services, yes, market, "yes", "buy", 3, 250)),
        (no, await place(services, no, market, "no", "sell", 5, 800)),
    ]
    assert (await services.wallet.wallet(yes)).locked == 750
    balances = {user: await balance(services, user) for user in (yes, no)}

    assert (await services.markets.close(market)).status == "closed"
    for user, order in resting:
        assert (await services.trading.order(user, order.id)).status == "canceled"
    for user in (yes, no):
        wallet = await services.wallet.wallet(user)
        assert (wallet.balance, wallet.locked) == (balances[user], 0)
    assert await escrow(services, market) == 10_000  # the contracts wait for resolution
    error = await refused(place(services, yes, market, "yes", "buy", 1, 500))
    assert (error.status_code, error.code) == (409, "market_not_open")
    for change in (services.markets.close, services.markets.pause, services.markets.resume):
        error = await refused(change(market))
        assert (error.status_code, error.code) == (409, "invalid_transition")
    assert await ledger_problems(services) == []


async def test_a_market_closes_once_closes_at_has_passed(services: Services) -> None:
    closes_at = datetime.now(UTC) + timedelta(seconds=0.5)
    market = await new_market(services, closes_at=closes_at.isoformat())
    buyer = await funded_user(services, 0)
    await place(services, buyer, market, "yes", "buy", 2, 500)
    await asyncio.sleep(max(0.0, closes_at.timestamp() - time.time()) + 0.05)
    await services.markets.close_due(CLOSE_DUE_MAX)  # what the market clock calls each tick
    assert (await services.markets.get(market)).status == "closed"
    assert (await services.wallet.wallet(buyer)).locked == 0
    assert await ledger_problems(services) == []


async def test_lifecycle_of_an_unknown_market_is_not_found(services: Services) -> None:
    unknown = 2**62
    for change in (services.markets.pause, services.markets.resume, services.markets.close):
        error = await refused(change(unknown))
        assert (error.status_code, error.code) == (404, "not_found")
    error = await refused(services.markets.resolve(unknown, "yes"))
    assert (error.status_code, error.code) == (404, "not_found")
    error = await refused(services.markets.get(unknown))
    assert (error.status_code, error.code) == (404, "not_found")


# --- resolution -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "fee_bps", "from_status"),
    # 333 bps floors: 6000 -> 199, 4000 -> 133, 3000 -> 99, 2000 -> 66, 5000 -> 166.
    [("yes", 0, "open"), ("yes", 333, "closed"), ("no", 250, "open"), ("void", 333, "paused")],
)
async def test_resolution_pays_every_holder_out_of_the_escrow_less_the_fee(
    services: Services, outcome: str, fee_bps: int, from_status: str
) -> None:
    market = await new_market(services, settlement_fee_bps=fee_bps)
    a, b, c, d = [await funded_user(services, 10_000) for _ in range(4)]
    await place(services, a, market, "yes", "buy", 10, 600)
    await place(services, b, market, "no", "buy", 10, 400)  # mint at 600: a 10 YES, b 10 NO
    await place(services, c, market, "yes", "buy", 4, 700)
    await place(services, a, market, "yes", "sell", 4, 700)  # transfer: a 6 YES, c 4 YES
    resting = await place(services, d, market, "yes", "buy", 2, 300)  # canceled on close
    listed = await services.markets.get(market)
    assert (listed.last_price, listed.volume, listed.best_yes_bid) == (700, 14, 300)
    assert await escrow(services, market) == 10 * 1000
    if from_status == "paused":
        await services.markets.pause(market)
    elif from_status == "closed":
        await services.markets.close(market)
    before = {user: await balance(services, user) for user in (a, b, c, d)}
    fees_before = await fees_collected(services)

    resolved = await services.markets.resolve(market, outcome)  # type: ignore[arg-type]
    assert (resolved.status, resolved.outcome) == ("resolved", outcome)
    assert resolved.resolved_at is not None

    yes_value = {"yes": 1000, "no": 0, "void": 500}[outcome]
    held = {a: (6, 0), b: (0, 10), c: (4, 0), d: (0, 0)}
    fees = 0
    for user, (yes, no) in held.items():
        gross = yes * yes_value + no * (1000 - yes_value)
        fee = gross * fee_bps // 10_000
        fees += fee
        wallet = await services.wallet.wallet(user)
        assert (wallet.balance, wallet.locked) == (before[user] + gross - fee, 0), user
        history = (await services.wallet.transactions(user, 2, None)).items
        paid = [(t.kind, t.amount) for t in history if t.ref == f"market:{market}"]
        assert paid == ([("fee", -fee)] if fee else []) + ([("payout", gross)] if gross else [])
    assert (await services.trading.order(d, resting.id)).status == "canceled"
    assert await escrow(services, market) == 0
    assert await fees_collected(services) == fees_before + fees
    assert await ledger_problems(services) == []

    for again in (outcome, "no" if outcome != "no" else "yes"):
        error = await refused(services.markets.resolve(market, again))  # type: ignore[arg-type]
        assert (error.status_code, error.code) == (409, "market_resolved")
    for change in (services.markets.close, services.markets.pause, services.markets.resume):
        error = await refused(change(market))
        assert (error.status_code, error.code) == (409, "invalid_transition")
    assert (await services.markets.get(market)).outcome == outcome


async def test_a_market_nobody_traded_resolves_paying_nothing(services: Services) -> None:
    market = await new_market(services, settlement_fee_bps=500)
    fees_before = await fees_collected(services)
    resolved = await services.markets.resolve(market, "no")
    assert (resolved.status, resolved.outcome) == ("resolved", "no")
    assert await escrow(services, market) == 0
    assert await fees_collected(services) == fees_before
    assert await ledger_problems(services) == []


async def test_two_resolutions_at_once_pay_once(services: Services) -> None:
    market = await new_market(services)
    yes, no = await funded_user(services, 5000), await funded_user(services, 5000)
    await place(services, yes, market, "yes", "buy", 5, 500)
    await place(services, no, market, "no", "buy", 5, 500)
    before = await balance(services, yes)
    await warm_pool(services)
    results = await asyncio.gather(
        services.markets.resolve(market, "yes"),
        services.markets.resolve(market, "no"),
        return_exceptions=True,
    )
    [won] = [r for r in results if not isinstance(r, BaseException)]
    [lost] = [r for r in results if isinstance(r, BaseException)]
    assert isinstance(lost, ApiError) and lost.code == "market_resolved", lost
    expected = before + (5000 if won.outcome == "yes" else 0)
    assert await balance(services, yes) == expected
    assert await escrow(services, market) == 0
    assert await ledger_problems(services) == []


# --- listing -----------------------------------------------------------------------------------


async def test_the_listing_filters_and_pages_newest_first_every_market_once(
    services: Services,
) -> None:
    category = f"paging-{time.monotonic_ns()}"
    ids = [await new_market(services, category=category) for _ in range(5)]
    await services.markets.pause(ids[1])
    await services.markets.close(ids[3])

    seen, cursor = [], None
    while True:
        page = await services.markets.list(status=None, category=category, limit=2, cursor=cursor)
        assert len(page.items) <= 2
        seen += [market.id for market in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids[::-1]

    async def listed(status: str) -> list[int]:
        page = await services.markets.list(status=status, category=category, limit=50, cursor=None)
        return [market.id for market in page.items]

    assert await listed("open") == [ids[4], ids[2], ids[0]]
    assert await listed("paused") == [ids[1]]
    assert await listed("closed") == [ids[3]]
    assert await listed("resolved") == []
