"""Hand-computed checks of the naive reference matcher (tests/property/naive.py).

The property tests trust `NaiveExchange` as the oracle for the fast engine, so the
oracle itself is pinned here against numbers worked out by hand from SPEC §6 and
docs/MATCHING.md: every row of the trade table with the taker on either side, lock
release on a better price, ioc / fok / market remainders, self-trade prevention, the
market buy limited by funds, rejection order, cancels, close and settlement.
"""

from __future__ import annotations

import pytest

from probo.orderbook.types import (
    CancelAll,
    CancelOrder,
    MarketStatusChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDuplicate,
    OrderRejected,
    Payout,
    PlaceOrder,
    TradeExecuted,
)
from tests.property.naive import InvalidMarketTransition, NaiveExchange, compute_settlement

M = 1
A, B, C = 11, 12, 13
START = 100_000


def limit(user, outcome, side, price, quantity, tif="gtc", coid=None, market=M):
    return PlaceOrder(
        user_id=user,
        market_id=market,
        outcome=outcome,
        side=side,
        type="limit",
        quantity=quantity,
        price=price,
        time_in_force=tif,
        client_order_id=coid,
    )


def market_order(user, outcome, side, quantity, market=M):
    return PlaceOrder(
        user_id=user,
        market_id=market,
        outcome=outcome,
        side=side,
        type="market",
        quantity=quantity,
        time_in_force="ioc",
    )


@pytest.fixture
def ex() -> NaiveExchange:
    ex = NaiveExchange()
    ex.open_market(M, tick=50)
    for user in (A, B, C):
        ex.credit(user, START)
    return ex


def give(ex: NaiveExchange, user: int, outcome: str, quantity: int) -> None:
    """Mint `quantity` contracts of `outcome` for `user` at 500 against C."""
    other = "no" if outcome == "yes" else "yes"
    ex.place(limit(C, other, "buy", 500, quantity))
    events = ex.place(limit(user, outcome, "buy", 500, quantity))
    assert events[1].kind == "mint"


def snapshot(ex: NaiveExchange, *users: int) -> dict:
    return {u: (ex.cash(u), ex.locked_cash(u), ex.position(u, M)) for u in users} | {
        "escrow": ex.escrow(M)
    }


def trade_of(events) -> TradeExecuted:
    trades = [e for e in events if isinstance(e, TradeExecuted)]
    assert len(trades) == 1, events
    return trades[0]


# --------------------------------------------------------------- the SPEC §6 table


def test_mint_taker_ask_buy_no_against_resting_buy_yes(ex):
    ex.place(limit(B, "yes", "buy", 600, 5))  # order 1, bid @600
    assert ex.locked_cash(B) == 3000
    events = ex.place(limit(A, "no", "buy", 400, 5))  # order 2, ask @600
    assert events == [
        OrderAccepted(2, A, M, "no", "buy", "limit", "gtc", 400, 5, None, 2000, 0),
        TradeExecuted(
            trade_id=1,
            market_id=M,
            kind="mint",
            yes_price=600,
            quantity=5,
            taker_order_id=2,
            taker_user_id=A,
            taker_outcome="no",
            taker_side="buy",
            maker_order_id=1,
            maker_user_id=B,
            maker_outcome="yes",
            maker_side="buy",
            taker_cash_delta=-2000,
            taker_yes_delta=0,
            taker_no_delta=5,
            maker_cash_delta=-3000,
            maker_yes_delta=5,
            maker_no_delta=0,
            escrow_delta=5000,
            taker_remaining=0,
            maker_remaining=0,
        ),
    ]
    assert snapshot(ex, A, B) == {
        A: (START - 2000, 0, (0, 5, 0, 0)),
        B: (START - 3000, 0, (5, 0, 0, 0)),
        "escrow": 5000,
    }


def test_mint_taker_bid_buy_yes_against_resting_buy_no_at_a_better_price(ex):
    ex.place(limit(A, "no", "buy", 400, 5))  # ask @600
    events = ex.place(limit(B, "yes", "buy", 650, 5))  # locks 3250, trades at 600
    assert events[0].locked_cash == 3250
    t = trade_of(events)
    assert (t.kind, t.yes_price, t.quantity) == ("mint", 600, 5)
    assert (t.taker_cash_delta, t.taker_yes_delta, t.maker_cash_delta, t.maker_no_delta) == (
        -3000,
        5,
        -2000,
        5,
    )
    # the 250 difference is back at once: nothing stays locked
    assert snapshot(ex, A, B) == {
        A: (START - 2000, 0, (0, 5, 0, 0)),
        B: (START - 3000, 0, (5, 0, 0, 0)),
        "escrow": 5000,
    }


def test_transfer_yes_both_ways(ex):
    give(ex, A, "yes", 4)  # A: YES 4, cash -2000; C: NO 4, cash -2000
    before = snapshot(ex, A, B)
    # taker on the ask side: A sells YES @550 into B's resting buy YES @700
    ex.place(limit(B, "yes", "buy", 700, 2))
    t = trade_of(ex.place(limit(A, "yes", "sell", 550, 2)))
    assert (t.kind, t.yes_price, t.quantity, t.escrow_delta) == ("transfer", 700, 2, 0)
    assert (t.taker_cash_delta, t.taker_yes_delta, t.maker_cash_delta, t.maker_yes_delta) == (
        1400,
        -2,
        -1400,
        2,
    )
    # taker on the bid side: B buys YES @900 from A's resting sell YES @800
    ex.place(limit(A, "yes", "sell", 800, 2))
    assert ex.position(A, M) == (2, 0, 2, 0)
    t = trade_of(ex.place(limit(B, "yes", "buy", 900, 2)))
    assert (t.kind, t.yes_price, t.taker_cash_delta, t.maker_cash_delta) == (
        "transfer",
        800,
        -1600,
        1600,
    )
    after = snapshot(ex, A, B)
    assert after[A] == (before[A][0] + 1400 + 1600, 0, (0, 0, 0, 0))
    assert after[B] == (before[B][0] - 1400 - 1600, 0, (4, 0, 0, 0))
    assert after["escrow"] == before["escrow"] == 4000


def test_transfer_no_both_ways(ex):
    give(ex, A, "no", 3)  # A: NO 3; C: YES 3
    cash_a, cash_b = ex.cash(A), ex.cash(B)
    # taker sell NO (bid @ YES 1000-300=700) into resting buy NO @350 (ask @650)
    ex.place(limit(B, "no", "buy", 350, 3))
    t = trade_of(ex.place(limit(A, "no", "sell", 300, 1)))
    assert (t.kind, t.yes_price, t.quantity) == ("transfer", 650, 1)
    assert (t.taker_cash_delta, t.taker_no_delta, t.maker_cash_delta, t.maker_no_delta) == (
        350,
        -1,
        -350,
        1,
    )
    assert (t.taker_remaining, t.maker_remaining) == (0, 2)
    # taker buy NO @400 (ask @600) into A's resting sell NO @250 (bid @750)
    assert ex.cancel_all(CancelAll(B, M))[0].released_cash == 700
    ex.place(limit(A, "no", "sell", 250, 2))
    events = ex.place(limit(B, "no", "buy", 400, 2))
    t = trade_of(events)
    assert (t.kind, t.yes_price, t.taker_cash_delta, t.maker_cash_delta) == (
        "transfer",
        750,
        -500,
        500,
    )
    assert ex.cash(A) == cash_a + 350 + 500
    assert (ex.cash(B), ex.locked_cash(B)) == (cash_b - 850, 0)
    assert ex.position(B, M) == (0, 3, 0, 0)
    assert ex.escrow(M) == 3000


def test_merge_both_ways(ex):
    give(ex, A, "yes", 3)  # A YES 3, C NO 3, escrow 3000
    give(ex, B, "no", 3)  # B NO 3, C YES 3, escrow 6000
    cash_a, cash_b = ex.cash(A), ex.cash(B)
    # taker sell NO @300 (bid @700) into resting sell YES @650 (ask @650): merge at 650
    ex.place(limit(A, "yes", "sell", 650, 2))
    t = trade_of(ex.place(limit(B, "no", "sell", 300, 2)))
    assert (t.kind, t.yes_price, t.escrow_delta) == ("merge", 650, -2000)
    assert (t.taker_cash_delta, t.taker_no_delta, t.maker_cash_delta, t.maker_yes_delta) == (
        700,
        -2,
        1300,
        -2,
    )
    # taker sell YES @200 (ask @200) into resting sell NO @400 (bid @600): merge at 600
    ex.place(limit(B, "no", "sell", 400, 1))
    t = trade_of(ex.place(limit(A, "yes", "sell", 200, 1)))
    assert (t.kind, t.yes_price, t.escrow_delta) == ("merge", 600, -1000)
    assert (t.taker_cash_delta, t.taker_yes_delta, t.maker_cash_delta, t.maker_no_delta) == (
        600,
        -1,
        400,
        -1,
    )
    assert ex.cash(A) == cash_a + 1300 + 600
    assert ex.cash(B) == cash_b + 700 + 400
    assert ex.position(A, M) == (0, 0, 0, 0) and ex.position(B, M) == (0, 0, 0, 0)
    assert ex.escrow(M) == 3000 == 1000 * ex.position(C, M)[0] == 1000 * ex.position(C, M)[1]


# --------------------------------------------------------------- locks and remainders


def test_partial_fill_at_better_price_then_rest(ex):
    ex.place(limit(B, "no", "buy", 700, 2))  # ask @300
    events = ex.place(limit(A, "yes", "buy", 500, 4))
    t = trade_of(events)
    assert (t.yes_price, t.quantity, t.taker_remaining, t.taker_cash_delta) == (300, 2, 2, -600)
    assert len(events) == 2  # gtc remainder rests silently
    # 2000 locked on entry, 1000 released by the fill (600 paid), 1000 still locked
    assert (ex.cash(A), ex.locked_cash(A), ex.available_cash(A)) == (
        START - 600,
        1000,
        START - 1600,
    )
    assert ex.depth(M) == {"yes": [(500, 2)], "no": []}


def test_ioc_remainder_releases_its_lock(ex):
    ex.place(limit(B, "no", "buy", 700, 2))  # ask @300
    events = ex.place(limit(A, "yes", "buy", 500, 4, tif="ioc"))
    assert events[-1] == OrderCanceled(2, A, M, "ioc_remainder", 2, 1000, 0)
    assert (ex.cash(A), ex.locked_cash(A)) == (START - 600, 0)
    assert ex.depth(M) == {"yes": [], "no": []}


def test_fok_counts_only_other_users_and_cancels_own_on_the_way(ex):
    ex.place(limit(A, "no", "buy", 600, 3))  # 1: A's own ask @400
    ex.place(limit(B, "no", "buy", 500, 2))  # 2: B's ask @500
    # A wants 3 at YES <= 500: only B's 2 count -> fok_unfilled, A's own order stays
    events = ex.place(limit(A, "yes", "buy", 500, 3, tif="fok"))
    assert events == [
        OrderAccepted(3, A, M, "yes", "buy", "limit", "fok", 500, 3, None, 1500, 0),
        OrderCanceled(3, A, M, "fok_unfilled", 3, 1500, 0),
    ]
    assert [o.order_id for o in ex.open_orders(M)] == [1, 2]
    # 2 are there: it fills, canceling A's own order met first
    events = ex.place(limit(A, "yes", "buy", 500, 2, tif="fok"))
    assert [type(e) for e in events] == [OrderAccepted, OrderCanceled, TradeExecuted]
    assert events[1] == OrderCanceled(1, A, M, "self_trade", 3, 1800, 0)
    assert (events[2].maker_order_id, events[2].quantity, events[2].taker_remaining) == (2, 2, 0)
    assert ex.locked_cash(A) == 0 and ex.open_orders(M) == []


def test_market_sell_remainder_and_contract_lock(ex):
    give(ex, A, "yes", 5)
    ex.place(limit(B, "yes", "buy", 450, 2))  # bid @450
    events = ex.place(market_order(A, "yes", "sell", 3))
    accepted = events[0]
    assert (accepted.price, accepted.time_in_force, accepted.locked_contracts) == (50, "ioc", 3)
    t = events[1]
    assert (t.yes_price, t.quantity, t.taker_cash_delta, t.taker_remaining) == (450, 2, 900, 1)
    assert events[2] == OrderCanceled(accepted.order_id, A, M, "ioc_remainder", 1, 0, 1)
    assert ex.position(A, M) == (3, 0, 0, 0)


def test_self_trade_prevention_cancels_and_goes_on(ex):
    ex.place(limit(A, "no", "buy", 400, 3))  # 1: A's ask @600
    ex.place(limit(B, "no", "buy", 350, 3))  # 2: B's ask @650
    events = ex.place(limit(A, "yes", "buy", 700, 2))
    assert events[1] == OrderCanceled(1, A, M, "self_trade", 3, 1200, 0)
    t = events[2]
    assert (t.maker_order_id, t.yes_price, t.quantity, t.maker_remaining) == (2, 650, 2, 1)
    assert len(events) == 3
    assert ex.locked_cash(A) == 0
    assert ex.cash(A) == START - 1300
    assert ex.depth(M) == {"yes": [], "no": [(350, 1)]}


def test_market_buy_limited_by_funds(ex):
    ex.credit(A + 100, 1500)
    poor = A + 100
    ex.place(limit(B, "no", "buy", 400, 2))  # 1: ask @600
    ex.place(limit(C, "no", "buy", 300, 5))  # 2: ask @700
    events = ex.place(market_order(poor, "yes", "buy", 10))
    # 2 x 600 = 1200 affordable; the 3rd contract (700) is not
    assert events[0] == OrderAccepted(
        3, poor, M, "yes", "buy", "market", "ioc", 950, 10, None, 1200, 0
    )
    t = events[1]
    # it buys the 2 it can afford (taker_remaining is against the 10 asked for)...
    assert (t.maker_order_id, t.quantity, t.yes_price, t.taker_cash_delta, t.taker_remaining) == (
        1,
        2,
        600,
        -1200,
        8,
    )
    # ...and the cancel names the 8 of the 10 asked for that it could not buy
    assert events[2] == OrderCanceled(3, poor, M, "ioc_remainder", 8, 0, 0)
    assert (ex.cash(poor), ex.locked_cash(poor), ex.position(poor, M)) == (300, 0, (2, 0, 0, 0))
    # liquidity (700) there but not one contract affordable: rejected, no id used
    events = ex.place(market_order(poor, "yes", "buy", 1))
    assert [e.code for e in events] == ["insufficient_funds"]
    # no liquidity at all on the NO-buy side: accepted and canceled
    events = ex.place(market_order(poor, "no", "buy", 4))
    assert events == [
        OrderAccepted(4, poor, M, "no", "buy", "market", "ioc", 950, 4, None, 0, 0),
        OrderCanceled(4, poor, M, "ioc_remainder", 4, 0, 0),
    ]


def test_market_buy_takes_partial_order_and_skips_own(ex):
    D = 20
    ex.credit(D, 1200)
    ex.place(limit(D, "yes", "buy", 500, 1))  # 1: D's own bid @500 (NO price 500)
    ex.place(limit(B, "yes", "buy", 450, 3))  # 2: B's bid @450 (NO price 550)
    # D: 1200 cash, 500 locked -> 700 available
    events = ex.place(market_order(D, "no", "buy", 3))
    # walk skipping A's own: 1 NO at 550 (700 - 550 = 150 left, next costs 550)
    assert events[0].locked_cash == 550
    assert events[1] == OrderCanceled(1, D, M, "self_trade", 1, 500, 0)
    assert (events[2].quantity, events[2].yes_price, events[2].kind) == (1, 450, "mint")
    assert events[2].taker_cash_delta == -550
    assert events[3] == OrderCanceled(3, D, M, "ioc_remainder", 2, 0, 0)
    assert (ex.cash(D), ex.locked_cash(D), ex.position(D, M)) == (650, 0, (0, 1, 0, 0))


# --------------------------------------------------------------- checks, cancels, lifecycle


def test_rejections_in_check_order(ex):
    ex.open_market(2, tick=100)
    assert ex.place(limit(A, "yes", "buy", 500, 1, coid="x"))[0].order_id == 1
    dup = ex.place(limit(A, "no", "sell", 7, 0, coid="x", market=99))
    assert dup == [OrderDuplicate(A, 99, "x", 1)]  # names the command's market
    codes = {
        "not_found": limit(A, "yes", "buy", 7, 0, market=99),
        "validation_error": PlaceOrder(
            A, M, "yes", "buy", "market", 1, price=500, time_in_force="ioc"
        ),
        "invalid_price": limit(A, "yes", "buy", 550, 0, market=2),
        "invalid_quantity": limit(A, "yes", "buy", 950, 100_001),
        "insufficient_funds": limit(A, "yes", "buy", 950, 105),  # 99750 > 99500 free
        "insufficient_position": limit(A, "yes", "sell", 950, 1),
    }
    for code, cmd in codes.items():
        (rejected,) = ex.place(cmd)
        assert isinstance(rejected, OrderRejected)
        assert (rejected.code, rejected.market_id, rejected.order_id) == (code, cmd.market_id, None)
    assert (
        ex.place(PlaceOrder(A, M, "yes", "buy", "market", 1, time_in_force="gtc"))[0].code
        == "validation_error"
    )
    assert ex.place(PlaceOrder(A, M, "yes", "buy", "limit", 1))[0].code == "validation_error"
    assert ex.place(limit(A, "yes", "buy", 1000, 1))[0].code == "invalid_price"
    assert ex.place(limit(A, "yes", "buy", 0, 1))[0].code == "invalid_price"
    ex.pause_market(M)
    assert ex.place(limit(A, "yes", "buy", 500, 1))[0].code == "market_not_open"
    # a rejected coid is not used up; the next accepted order gets id 2
    ex.resume_market(M)
    assert ex.place(limit(A, "yes", "buy", 500, 1, coid="y"))[0].order_id == 2


def test_cancel_codes_and_cancel_all(ex):
    ex.place(limit(A, "yes", "buy", 500, 2))  # 1
    ex.place(limit(A, "no", "buy", 300, 1))  # 2
    ex.place(limit(B, "yes", "buy", 400, 1))  # 3
    assert ex.cancel(CancelOrder(A, M, 3))[0].code == "not_found"  # another user's
    assert ex.cancel(CancelOrder(A, M, 77))[0].code == "not_found"  # never issued
    ex.pause_market(M)
    assert ex.cancel(CancelOrder(A, M, 2)) == [OrderCanceled(2, A, M, "user", 1, 300, 0)]
    rejected = ex.cancel(CancelOrder(A, M, 2))[0]
    assert (rejected.code, rejected.order_id) == ("order_not_open", 2)
    assert ex.cancel_all(CancelAll(A, M)) == [OrderCanceled(1, A, M, "user", 2, 1000, 0)]
    assert ex.cancel_all(CancelAll(A, M)) == []
    assert ex.locked_cash(A) == 0


def test_close_cancels_by_id_then_settles_with_fee(ex):
    give(ex, A, "yes", 3)  # orders 1, 2; A YES 3, C NO 3
    ex.place(limit(A, "yes", "sell", 900, 1))  # 3
    ex.place(limit(B, "yes", "buy", 100, 2))  # 4
    events = ex.close_market(M)
    assert events == [
        OrderCanceled(3, A, M, "market_closed", 1, 0, 1),
        OrderCanceled(4, B, M, "market_closed", 2, 200, 0),
        MarketStatusChanged(M, "closed"),
    ]
    with pytest.raises(InvalidMarketTransition):
        ex.resume_market(M)
    cash_a, cash_c = ex.cash(A), ex.cash(C)
    settlement = ex.settle_market(M, "void", 150)
    # void: 500 each; fee floor(1500 * 150 / 10000) = 22
    assert settlement.payouts == [Payout(A, 3, 0, 1500, 22, 1478), Payout(C, 0, 3, 1500, 22, 1478)]
    assert (settlement.escrow_released, settlement.fees) == (3000, 44)
    assert (ex.cash(A), ex.cash(C), ex.escrow(M)) == (cash_a + 1478, cash_c + 1478, 0)
    assert ex.position(A, M) == (0, 0, 0, 0)


def test_compute_settlement_outcomes():
    holdings = {5: (2, 1), 3: (0, 4), 9: (0, 0)}
    yes = compute_settlement(7, holdings, "yes", 0)
    assert [(p.user_id, p.gross) for p in yes.payouts] == [(5, 2000)]
    no = compute_settlement(7, holdings, "no", 333)
    assert [(p.user_id, p.gross, p.fee, p.net) for p in no.payouts] == [
        (3, 4000, 133, 3867),
        (5, 1000, 33, 967),
    ]
    assert (no.escrow_released, no.fees) == (5000, 166)


def test_depth_views_yes_bids_and_no_bids(ex):
    give(ex, A, "no", 5)  # orders 1, 2 filled
    ex.place(limit(B, "yes", "buy", 300, 2))  # bid @300
    ex.place(limit(A, "no", "sell", 650, 3))  # bid @350
    ex.place(limit(B, "yes", "buy", 350, 1))  # bid @350
    ex.place(limit(B, "no", "buy", 400, 4))  # ask @600 -> NO 400
    ex.place(limit(C, "yes", "sell", 700, 1))  # ask @700 -> NO 300
    assert ex.depth(M) == {"yes": [(350, 4), (300, 2)], "no": [(400, 4), (300, 1)]}
    assert ex.depth(M, levels=1) == {"yes": [(350, 4)], "no": [(400, 4)]}
    assert [o.order_id for o in ex.open_orders(M)] == [4, 5, 3, 6, 7]
