"""The matching core against the SPEC §6 table, every lock release path, the typed
rejections, market close and settlement. Pure: no IO."""

from __future__ import annotations

import pytest

from probo.orderbook import (
    CancelAll,
    CancelOrder,
    Exchange,
    InvalidMarketTransition,
    MarketStatusChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDuplicate,
    OrderRejected,
    PlaceOrder,
    TradeExecuted,
)

M = 1  # market id
ALICE, BOB, CAROL = 1, 2, 3
FUNDS = 1_000_000


@pytest.fixture
def ex() -> Exchange:
    exchange = Exchange()
    exchange.open_market(M, tick=50)
    for user in (ALICE, BOB, CAROL):
        exchange.credit(user, FUNDS)
    return exchange


def limit(
    user: int, outcome: str, side: str, price: int, quantity: int, tif: str = "gtc", **kw: object
) -> PlaceOrder:
    return PlaceOrder(
        user_id=user,
        market_id=M,
        outcome=outcome,
        side=side,
        type="limit",
        price=price,
        quantity=quantity,
        time_in_force=tif,
        **kw,  # type: ignore[arg-type]
    )


def market(user: int, outcome: str, side: str, quantity: int) -> PlaceOrder:
    return PlaceOrder(
        user_id=user,
        market_id=M,
        outcome=outcome,
        side=side,
        type="market",
        quantity=quantity,
        time_in_force="ioc",
    )  # type: ignore[arg-type]


def trades(events: list) -> list[TradeExecuted]:
    return [e for e in events if isinstance(e, TradeExecuted)]


def place(ex: Exchange, command: PlaceOrder) -> list:
    events = ex.place(command)
    ex.validate()
    return events


def give_contracts(
    ex: Exchange, yes_holder: int, no_holder: int, quantity: int, yes_price: int = 500
) -> None:
    """Mint `quantity` pairs: `yes_holder` gets YES, `no_holder` NO."""
    place(ex, limit(yes_holder, "yes", "buy", yes_price, quantity))
    [trade] = trades(place(ex, limit(no_holder, "no", "buy", 1000 - yes_price, quantity)))
    assert trade.kind == "mint"


# --- the SPEC §6 table, taker on either side ------------------------------------------


@pytest.mark.parametrize("taker_is_bid", [True, False])
def test_buy_yes_meets_sell_yes_transfer(ex: Exchange, taker_is_bid: bool) -> None:
    give_contracts(ex, BOB, CAROL, 10)
    bob_cash = ex.cash(BOB)
    bid, ask = limit(ALICE, "yes", "buy", 600, 4), limit(BOB, "yes", "sell", 600, 4)
    place(ex, ask if taker_is_bid else bid)
    [trade] = trades(place(ex, bid if taker_is_bid else ask))
    assert (trade.kind, trade.yes_price, trade.quantity, trade.escrow_delta) == (
        "transfer",
        600,
        4,
        0,
    )
    assert ex.cash(ALICE) == FUNDS - 2400
    assert ex.cash(BOB) == bob_cash + 2400
    assert ex.position(ALICE, M) == (4, 0, 0, 0)
    assert ex.position(BOB, M) == (6, 0, 0, 0)
    buyer_delta = (-2400, 4, 0)
    seller_delta = (2400, -4, 0)
    taker, maker = (buyer_delta, seller_delta) if taker_is_bid else (seller_delta, buyer_delta)
    assert (trade.taker_cash_delta, trade.taker_yes_delta, trade.taker_no_delta) == taker
    assert (trade.maker_cash_delta, trade.maker_yes_delta, trade.maker_no_delta) == maker


@pytest.mark.parametrize("taker_is_bid", [True, False])
def test_buy_yes_meets_buy_no_mint(ex: Exchange, taker_is_bid: bool) -> None:
    bid, ask = limit(ALICE, "yes", "buy", 650, 3), limit(BOB, "no", "buy", 350, 3)
    place(ex, ask if taker_is_bid else bid)
    [trade] = trades(place(ex, bid if taker_is_bid else ask))
    assert (trade.kind, trade.yes_price, trade.quantity, trade.escrow_delta) == (
        "mint",
        650,
        3,
        3000,
    )
    assert ex.cash(ALICE) == FUNDS - 1950
    assert ex.cash(BOB) == FUNDS - 1050
    assert ex.escrow(M) == 3000
    assert ex.position(ALICE, M) == (3, 0, 0, 0)
    assert ex.position(BOB, M) == (0, 3, 0, 0)
    assert ex.locked_cash(ALICE) == ex.locked_cash(BOB) == 0


@pytest.mark.parametrize("taker_is_bid", [True, False])
def test_sell_no_meets_sell_yes_merge(ex: Exchange, taker_is_bid: bool) -> None:
    give_contracts(ex, ALICE, BOB, 5)  # ALICE YES, BOB NO; escrow 5000
    alice_cash, bob_cash = ex.cash(ALICE), ex.cash(BOB)
    bid, ask = (
        limit(BOB, "no", "sell", 300, 5),
        limit(ALICE, "yes", "sell", 700, 5),
    )  # bid at YES 700
    place(ex, ask if taker_is_bid else bid)
    [trade] = trades(place(ex, bid if taker_is_bid else ask))
    assert (trade.kind, trade.yes_price, trade.quantity, trade.escrow_delta) == (
        "merge",
        700,
        5,
        -5000,
    )
    assert ex.cash(ALICE) == alice_cash + 3500
    assert ex.cash(BOB) == bob_cash + 1500
    assert ex.escrow(M) == 0
    assert ex.position(ALICE, M) == ex.position(BOB, M) == (0, 0, 0, 0)


@pytest.mark.parametrize("taker_is_bid", [True, False])
def test_sell_no_meets_buy_no_transfer(ex: Exchange, taker_is_bid: bool) -> None:
    give_contracts(ex, CAROL, BOB, 6)  # BOB holds NO
    bob_cash = ex.cash(BOB)
    bid, ask = (
        limit(BOB, "no", "sell", 450, 6),
        limit(ALICE, "no", "buy", 450, 6),
    )  # both at YES 550
    place(ex, ask if taker_is_bid else bid)
    [trade] = trades(place(ex, bid if taker_is_bid else ask))
    assert (trade.kind, trade.yes_price, trade.quantity, trade.escrow_delta) == (
        "transfer",
        550,
        6,
        0,
    )
    assert ex.cash(ALICE) == FUNDS - 2700
    assert ex.cash(BOB) == bob_cash + 2700
    assert ex.position(ALICE, M) == (0, 6, 0, 0)
    assert ex.position(BOB, M) == (0, 0, 0, 0)


# --- locks and their releases -----------------------------------------------------------


def test_buy_locks_price_times_quantity_and_a_better_fill_releases_the_difference(
    ex: Exchange,
) -> None:
    place(ex, limit(BOB, "no", "buy", 450, 10))  # an ask at YES 550
    [accepted, trade] = place(ex, limit(ALICE, "yes", "buy", 700, 4))
    assert isinstance(accepted, OrderAccepted) and accepted.locked_cash == 2800
    assert trade.yes_price == 550
    assert ex.cash(ALICE) == FUNDS - 2200  # paid 550 each
    assert ex.locked_cash(ALICE) == 0  # the 150 x 4 difference came back at the fill


def test_partial_fill_keeps_the_rest_locked_at_the_limit(ex: Exchange) -> None:
    place(ex, limit(BOB, "no", "buy", 450, 2))
    place(ex, limit(ALICE, "yes", "buy", 700, 5))
    assert ex.locked_cash(ALICE) == 3 * 700
    assert ex.available_cash(ALICE) == FUNDS - 2 * 550 - 3 * 700


def test_cancel_releases_exactly_what_is_still_locked(ex: Exchange) -> None:
    [accepted, _] = place(ex, limit(ALICE, "yes", "buy", 400, 10)), None
    order_id = accepted[0].order_id
    place(ex, limit(BOB, "no", "buy", 600, 3))  # fills 3 at 400
    [canceled] = ex.cancel(CancelOrder(ALICE, M, order_id))
    ex.validate()
    assert canceled == OrderCanceled(order_id, ALICE, M, "user", 7, 2800, 0)
    assert ex.locked_cash(ALICE) == 0
    assert ex.cash(ALICE) == FUNDS - 1200


def test_sell_locks_contracts_and_cancel_gives_them_back(ex: Exchange) -> None:
    give_contracts(ex, ALICE, BOB, 5)
    [accepted] = place(ex, limit(ALICE, "yes", "sell", 800, 5))
    assert accepted.locked_contracts == 5
    assert ex.position(ALICE, M) == (5, 0, 5, 0)
    rejected = place(ex, limit(ALICE, "yes", "sell", 800, 1))
    assert rejected[0].code == "insufficient_position"
    [canceled] = ex.cancel(CancelOrder(ALICE, M, accepted.order_id))
    assert (canceled.released_contracts, canceled.released_cash) == (5, 0)
    assert ex.position(ALICE, M) == (5, 0, 0, 0)


def test_ioc_remainder_is_canceled_and_released(ex: Exchange) -> None:
    place(ex, limit(BOB, "no", "buy", 500, 2))
    events = place(ex, limit(ALICE, "yes", "buy", 500, 5, tif="ioc"))
    assert [type(e) for e in events] == [OrderAccepted, TradeExecuted, OrderCanceled]
    assert (events[-1].reason, events[-1].canceled_quantity, events[-1].released_cash) == (
        "ioc_remainder",
        3,
        1500,
    )
    assert ex.locked_cash(ALICE) == 0
    assert not ex.open_orders(M)


def test_fok_that_cannot_fill_touches_nothing(ex: Exchange) -> None:
    place(ex, limit(BOB, "no", "buy", 500, 2))
    place(ex, limit(ALICE, "no", "buy", 500, 5))  # ALICE's own liquidity does not count
    events = place(ex, limit(ALICE, "yes", "buy", 500, 5, tif="fok"))
    assert [type(e) for e in events] == [OrderAccepted, OrderCanceled]
    assert (events[-1].reason, events[-1].canceled_quantity, events[-1].released_cash) == (
        "fok_unfilled",
        5,
        2500,
    )
    assert len(ex.open_orders(M)) == 2
    assert ex.locked_cash(ALICE) == 2500  # only the resting NO buy


def test_fok_that_can_fill_cancels_own_orders_on_the_way(ex: Exchange) -> None:
    [own] = place(ex, limit(ALICE, "no", "buy", 500, 5))
    place(ex, limit(BOB, "no", "buy", 500, 5))
    events = place(ex, limit(ALICE, "yes", "buy", 500, 5, tif="fok"))
    assert [type(e) for e in events] == [OrderAccepted, OrderCanceled, TradeExecuted]
    assert (events[1].order_id, events[1].reason) == (own.order_id, "self_trade")
    assert events[2].maker_user_id == BOB and events[2].quantity == 5
    assert ex.locked_cash(ALICE) == 0


def test_fok_counts_other_users_behind_own_orders_at_a_better_price(ex: Exchange) -> None:
    [own] = place(ex, limit(ALICE, "no", "buy", 600, 4))  # ask at YES 400, first in line
    place(ex, limit(BOB, "no", "buy", 500, 3))  # ask at YES 500
    events = place(ex, limit(ALICE, "yes", "buy", 500, 3, tif="fok"))
    assert [type(e) for e in events] == [OrderAccepted, OrderCanceled, TradeExecuted]
    assert (events[1].order_id, events[1].reason) == (own.order_id, "self_trade")
    assert (events[2].yes_price, events[2].quantity, events[2].taker_remaining) == (500, 3, 0)


def test_market_buy_facing_only_own_orders_meets_nothing(ex: Exchange) -> None:
    [own] = place(ex, limit(ALICE, "no", "buy", 600, 4))
    events = place(ex, market(ALICE, "yes", "buy", 2))
    assert [type(e) for e in events] == [OrderAccepted, OrderCanceled]
    assert (events[0].locked_cash, events[1].reason, events[1].canceled_quantity) == (
        0,
        "ioc_remainder",
        2,
    )
    assert [o.order_id for o in ex.open_orders(M)] == [own.order_id]
    assert ex.locked_cash(ALICE) == 2400


def test_self_trade_cancels_the_resting_order_and_matching_goes_on(ex: Exchange) -> None:
    [mine] = place(ex, limit(ALICE, "no", "buy", 450, 3))  # ask at 550, first in time
    place(ex, limit(BOB, "no", "buy", 450, 3))
    events = place(ex, limit(ALICE, "yes", "buy", 550, 3))
    canceled, trade = events[1], events[2]
    assert isinstance(canceled, OrderCanceled) and canceled.order_id == mine.order_id
    assert (canceled.reason, canceled.released_cash) == ("self_trade", 1350)
    assert isinstance(trade, TradeExecuted) and trade.maker_user_id == BOB
    assert ex.locked_cash(ALICE) == 0


def test_market_buy_fills_only_as_far_as_funds_allow(ex: Exchange) -> None:
    poor = 9
    ex.credit(poor, 1000)
    place(ex, limit(BOB, "no", "buy", 700, 1))  # ask at YES 300
    place(ex, limit(BOB, "no", "buy", 600, 5))  # ask at YES 400
    events = place(ex, market(poor, "yes", "buy", 10))
    accepted, *fills, canceled = events
    assert accepted.locked_cash == 300 + 400  # one at 300, then one at 400: 1000 buys no third
    assert [(t.yes_price, t.quantity) for t in fills] == [(300, 1), (400, 1)]
    assert (canceled.reason, canceled.canceled_quantity, canceled.released_cash) == (
        "ioc_remainder",
        8,
        0,
    )
    assert ex.cash(poor) == 300 and ex.locked_cash(poor) == 0


def test_market_buy_with_no_funds_for_one_contract_is_refused(ex: Exchange) -> None:
    ex.credit(9, 100)
    place(ex, limit(BOB, "no", "buy", 700, 1))
    [rejected] = place(ex, market(9, "yes", "buy", 1))
    assert (rejected.code, ex.last_order_id) == ("insufficient_funds", 1)


def test_market_order_into_an_empty_book_is_accepted_and_canceled(ex: Exchange) -> None:
    events = place(ex, market(ALICE, "yes", "buy", 3))
    assert [type(e) for e in events] == [OrderAccepted, OrderCanceled]
    assert events[1].canceled_quantity == 3


def test_market_sell_sweeps_bids_and_cancels_the_rest(ex: Exchange) -> None:
    give_contracts(ex, ALICE, BOB, 6)
    place(ex, limit(CAROL, "yes", "buy", 600, 2))
    place(ex, limit(CAROL, "yes", "buy", 550, 2))
    events = place(ex, market(ALICE, "yes", "sell", 6))
    assert [(t.yes_price, t.quantity) for t in trades(events)] == [(600, 2), (550, 2)]
    assert (events[-1].canceled_quantity, events[-1].released_contracts) == (2, 2)
    assert ex.position(ALICE, M) == (2, 0, 0, 0)


def test_price_time_priority_across_order_kinds(ex: Exchange) -> None:
    give_contracts(ex, CAROL, ALICE, 10)  # CAROL holds YES
    [first] = place(ex, limit(BOB, "no", "buy", 450, 1))  # ask 550, first
    [second] = place(ex, limit(CAROL, "yes", "sell", 550, 1))  # ask 550, second
    [better] = place(ex, limit(BOB, "no", "buy", 500, 1))  # ask 500, best price
    events = place(ex, limit(ALICE, "yes", "buy", 550, 3))
    assert [t.maker_order_id for t in trades(events)] == [
        better.order_id,
        first.order_id,
        second.order_id,
    ]
    assert [t.kind for t in trades(events)] == ["mint", "mint", "transfer"]


def test_market_close_cancels_everything_and_releases_every_lock(ex: Exchange) -> None:
    give_contracts(ex, ALICE, BOB, 4)
    place(ex, limit(ALICE, "yes", "sell", 900, 4))
    place(ex, limit(BOB, "yes", "buy", 100, 7))
    place(ex, limit(CAROL, "no", "buy", 200, 3))
    events = ex.close_market(M)
    ex.validate()
    assert [e.reason for e in events[:-1]] == ["market_closed"] * 3
    assert events[-1] == MarketStatusChanged(M, "closed")
    assert all(ex.locked_cash(u) == 0 for u in (ALICE, BOB, CAROL))
    assert ex.position(ALICE, M) == (4, 0, 0, 0)
    assert place(ex, limit(ALICE, "yes", "buy", 500, 1))[0].code == "market_not_open"
    with pytest.raises(InvalidMarketTransition):
        ex.resume_market(M)


def test_paused_market_refuses_orders_but_allows_cancels(ex: Exchange) -> None:
    [resting] = place(ex, limit(ALICE, "yes", "buy", 500, 1))
    ex.pause_market(M)
    assert place(ex, limit(BOB, "no", "buy", 500, 1))[0].code == "market_not_open"
    assert isinstance(ex.cancel(CancelOrder(ALICE, M, resting.order_id))[0], OrderCanceled)
    ex.resume_market(M)
    assert isinstance(place(ex, limit(BOB, "no", "buy", 500, 1))[0], OrderAccepted)


# --- checks and rejections ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (limit(ALICE, "yes", "buy", 525, 1), "invalid_price"),
        (limit(ALICE, "yes", "buy", 0, 1), "invalid_price"),
        (limit(ALICE, "yes", "buy", 1000, 1), "invalid_price"),
        (limit(ALICE, "yes", "buy", 500, 0), "invalid_quantity"),
        (limit(ALICE, "yes", "buy", 500, 100_001), "invalid_quantity"),
        (
            PlaceOrder(ALICE, M, "yes", "buy", "market", 1, price=500, time_in_force="ioc"),
            "validation_error",
        ),
        (PlaceOrder(ALICE, M, "yes", "buy", "market", 1, time_in_force="gtc"), "validation_error"),
        (PlaceOrder(ALICE, M, "yes", "buy", "limit", 1), "validation_error"),
        (limit(ALICE, "yes", "buy", 950, 10_000), "insufficient_funds"),
        (limit(ALICE, "no", "sell", 500, 1), "insufficient_position"),
        (PlaceOrder(ALICE, 99, "yes", "buy", "limit", 1, price=500), "not_found"),
    ],
)
def test_refusals_are_typed_and_change_nothing(
    ex: Exchange, command: PlaceOrder, code: str
) -> None:
    [rejected] = place(ex, command)
    assert isinstance(rejected, OrderRejected) and rejected.code == code
    assert ex.last_order_id == 0 and ex.locked_cash(ALICE) == 0


def test_client_order_id_is_unique_per_user(ex: Exchange) -> None:
    [first] = place(ex, limit(ALICE, "yes", "buy", 500, 1, client_order_id="a-1"))
    [again] = place(ex, limit(ALICE, "yes", "buy", 300, 9, client_order_id="a-1"))
    assert again == OrderDuplicate(ALICE, M, "a-1", first.order_id)
    [other_user] = place(ex, limit(BOB, "yes", "buy", 500, 1, client_order_id="a-1"))
    assert isinstance(other_user, OrderAccepted)


def test_cancel_of_someone_elses_or_a_closed_order(ex: Exchange) -> None:
    [bobs] = place(ex, limit(BOB, "yes", "buy", 500, 1))
    assert ex.cancel(CancelOrder(ALICE, M, bobs.order_id))[0].code == "not_found"
    assert ex.cancel(CancelOrder(ALICE, M, 999))[0].code == "not_found"
    ex.cancel(CancelOrder(BOB, M, bobs.order_id))
    assert ex.cancel(CancelOrder(BOB, M, bobs.order_id))[0].code == "order_not_open"


def test_cancel_all_cancels_only_mine_in_that_market(ex: Exchange) -> None:
    ex.open_market(2)
    place(ex, limit(ALICE, "yes", "buy", 100, 1))
    place(ex, limit(ALICE, "no", "buy", 100, 1))
    place(ex, limit(BOB, "yes", "buy", 100, 1))
    ex.place(PlaceOrder(ALICE, 2, "yes", "buy", "limit", 1, price=100))
    events = ex.cancel_all(CancelAll(ALICE, M))
    ex.validate()
    assert [e.order_id for e in events] == [1, 2]
    assert ex.locked_cash(ALICE) == 100  # the order in market 2


def test_depth_has_the_spec_shape(ex: Exchange) -> None:
    give_contracts(ex, ALICE, CAROL, 1, yes_price=300)  # CAROL holds one NO
    place(ex, limit(ALICE, "yes", "buy", 400, 2))
    place(ex, limit(ALICE, "yes", "buy", 450, 1))
    place(ex, limit(BOB, "no", "buy", 450, 3))  # ask at YES 550, shown as a NO bid at 450
    place(ex, limit(CAROL, "no", "sell", 600, 1))  # a YES bid at 400
    assert ex.depth(M) == {"yes": [(450, 1), (400, 3)], "no": [(450, 3)]}


# --- settlement ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "fee_bps", "alice_net", "bob_net", "fees"),
    [
        ("yes", 0, 3000, 0, 0),
        ("no", 0, 0, 3000, 0),
        ("void", 0, 1500, 1500, 0),
        ("yes", 250, 2925, 0, 75),
        ("void", 333, 1451, 1451, 98),
    ],
)
def test_settlement_pays_out_of_escrow_exactly(
    ex: Exchange, outcome: str, fee_bps: int, alice_net: int, bob_net: int, fees: int
) -> None:
    give_contracts(ex, ALICE, BOB, 3, yes_price=600)
    before = {u: ex.cash(u) for u in (ALICE, BOB)}
    ex.close_market(M)
    settlement = ex.settle_market(M, outcome, fee_bps)
    ex.validate()
    assert ex.cash(ALICE) - before[ALICE] == alice_net
    assert ex.cash(BOB) - before[BOB] == bob_net
    assert settlement.fees == fees
    assert settlement.escrow_released == 3000
    assert ex.escrow(M) == 0 and ex.position(ALICE, M) == (0, 0, 0, 0)


def test_open_orders_per_user_and_market_are_capped(ex: Exchange) -> None:
    from probo.orderbook.exchange import OPEN_ORDERS_PER_USER_MAX

    for _ in range(OPEN_ORDERS_PER_USER_MAX):
        assert isinstance(ex.place(limit(ALICE, "yes", "buy", 50, 1))[0], OrderAccepted)
    [refused] = place(ex, limit(ALICE, "yes", "buy", 50, 1))
    assert refused.code == "too_many_open_orders"
    # An order that cannot rest is still welcome, and so is everyone else.
    assert isinstance(place(ex, limit(ALICE, "yes", "buy", 50, 1, tif="ioc"))[0], OrderAccepted)
    assert isinstance(place(ex, limit(BOB, "yes", "buy", 50, 1))[0], OrderAccepted)
    assert len(ex.cancel_all(CancelAll(ALICE, M))) == OPEN_ORDERS_PER_USER_MAX


def test_a_refused_order_leaves_no_trace(ex: Exchange) -> None:
    stranger = 77
    assert place(ex, limit(stranger, "yes", "sell", 500, 1))[0].code == "insufficient_position"
    assert place(ex, limit(stranger, "yes", "buy", 500, 1))[0].code == "insufficient_funds"
    assert stranger not in ex.markets[M].positions
    assert ex.cash(stranger) == 0 and ex.locked_cash(stranger) == 0


def test_settlement_is_refused_before_close_and_for_bad_input_without_changing_anything(
    ex: Exchange,
) -> None:
    give_contracts(ex, ALICE, BOB, 2)
    with pytest.raises(InvalidMarketTransition):
        ex.settle_market(M, "yes", 0)
    ex.close_market(M)
    with pytest.raises(ValueError):
        ex.settle_market(M, "maybe", 0)
    with pytest.raises(ValueError):
        ex.settle_market(M, "yes", 10_001)
    assert ex.escrow(M) == 2000
    assert ex.settle_market(M, "yes", 0).escrow_released == 2000
    ex.validate()


def test_a_market_id_or_tick_cannot_be_reused_or_invalid(ex: Exchange) -> None:
    with pytest.raises(ValueError):
        ex.open_market(M)
    with pytest.raises(ValueError):
        ex.open_market(5, tick=30)
