"""Every consumer of engine events knows every event type, and fails on one it does not
know instead of skipping it: the ledger's translation and its account lookup, the
committed book, the market feeds and the user channel. A batch whose balance changes
do not balance (double entry, SPEC §3 invariant 1) is refused before it is written.
Pure: no IO."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, get_args

import msgspec
import pytest

from probo.ledger import LedgerWriter
from probo.ledger import batch as batch_module
from probo.ledger.batch import BatchRows, assert_double_entry, build_batch
from probo.orderbook import (
    Engine,
    Entry,
    Event,
    MarketStatusChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDuplicate,
    OrderRejected,
    PairsChanged,
    Payout,
    Settlement,
    TradeExecuted,
    WithdrawalAccepted,
    WithdrawalDuplicate,
    WithdrawalRejected,
    parties,
)
from probo.realtime import Hub
from probo.realtime.book import CommittedBook
from probo.realtime.subscriber import Subscriber
from probo.realtime.users import UserFeeds

AT = datetime(2026, 1, 1, tzinfo=UTC)
MARKET = 1
TAKER, MAKER = 1, 2  # user ids
CASH_ACCOUNTS = {TAKER: 11, MAKER: 12}
ESCROW_ACCOUNTS = {MARKET: 21}


class NotAnEngineEvent(msgspec.Struct, frozen=True):
    """What a new engine event looks like to a consumer that was not told of it."""

    market_id: int = MARKET
    user_id: int = TAKER


def _mint(**changes: Any) -> TradeExecuted:
    """TAKER's YES buy at 600 meets MAKER's resting NO buy at 400: 2 pairs minted."""
    trade = TradeExecuted(
        trade_id=1, market_id=MARKET, kind="mint", yes_price=600, quantity=2,
        taker_order_id=3, taker_user_id=TAKER, taker_outcome="yes", taker_side="buy",
        maker_order_id=2, maker_user_id=MAKER, maker_outcome="no", maker_side="buy",
        taker_cash_delta=-1200, taker_yes_delta=2, taker_no_delta=0,
        maker_cash_delta=-800, maker_yes_delta=0, maker_no_delta=2,
        escrow_delta=2000, taker_remaining=3, maker_remaining=0,
    )  # fmt: skip
    return msgspec.structs.replace(trade, **changes)


def one_of_each() -> list[Event]:
    """An event of every engine event type, as one plausible command stream."""
    return [
        OrderAccepted(
            order_id=3,
            user_id=TAKER,
            market_id=MARKET,
            outcome="yes",
            side="buy",
            type="limit",
            time_in_force="gtc",
            price=600,
            quantity=5,
            client_order_id="c3",
            locked_cash=3000,
            locked_contracts=0,
        ),  # fmt: skip
        _mint(),
        OrderCanceled(
            order_id=3,
            user_id=TAKER,
            market_id=MARKET,
            reason="user",
            canceled_quantity=3,
            released_cash=1800,
            released_contracts=0,
        ),  # fmt: skip
        OrderRejected(TAKER, MARKET, "insufficient_funds", "not enough cash"),
        OrderDuplicate(TAKER, MARKET, client_order_id="c3", order_id=3),
        MarketStatusChanged(MARKET, "closed"),
        Settlement(
            MARKET,
            "yes",
            [Payout(TAKER, 2, 0, gross=2000, fee=20, net=1980)],
            escrow_released=2000,
            fees=20,
        ),  # fmt: skip
        WithdrawalAccepted(withdrawal_id=1, user_id=MAKER, amount=100, idempotency_key="w1"),
        WithdrawalRejected(MAKER, 10**6, "w2", "insufficient_funds", "not enough cash"),
        WithdrawalDuplicate(MAKER, "w1", withdrawal_id=1, amount=100),
        PairsChanged("split", TAKER, MARKET, 2, yes_quantity=2, no_quantity=2, cash=0, locked=0),
        PairsChanged("merge", TAKER, MARKET, 1, yes_quantity=1, no_quantity=1, cash=1000, locked=0),
    ]


def test_the_sample_stream_holds_every_engine_event_type() -> None:
    """So each consumer below is tried on every type; a new type fails here first."""
    assert {type(event) for event in one_of_each()} == set(get_args(Event))


# --- each consumer, fed one command's events ------------------------------------------


def _translate(events: Sequence[object]) -> None:
    build_batch([Entry(events, AT, None)], CASH_ACCOUNTS, ESCROW_ACCOUNTS, {}, set())


def _look_up_accounts(events: Sequence[object]) -> None:
    writer = LedgerWriter("postgresql://unused", backlog_max=1)
    writer._missing_accounts([Entry(events, AT, None)])


def _apply_to_book(events: Sequence[object]) -> None:
    CommittedBook(MARKET).apply(events)  # type: ignore[arg-type]


def _publish_to_market_feeds(events: Sequence[object]) -> None:
    Hub(Engine(), pool=None).committed([Entry(events, AT, None)])  # type: ignore[arg-type]


def _name_parties(events: Sequence[object]) -> None:
    parties(events)  # the writer's quarantine and the engine's watched balances


def _send_on_user_channel(events: Sequence[object]) -> None:
    feeds = UserFeeds(Engine(), pool=None, is_revoked=lambda jti: False)  # type: ignore[arg-type]
    feeds.join(Subscriber(TAKER))
    feeds.committed([Entry(events, AT, None)])


# (consumer, how its failure names itself)
CONSUMERS = pytest.mark.parametrize(
    ("consume", "consumer"),
    [
        (_translate, "the ledger"),
        (_look_up_accounts, "the ledger"),
        (_apply_to_book, "the committed book"),
        (_publish_to_market_feeds, "the hub"),
        (_send_on_user_channel, "the user channel"),
        (_name_parties, "parties()"),
    ],
    ids=["ledger-translation", "ledger-account-lookup", "committed-book", "market-feeds",
         "user-channel", "parties"],
)  # fmt: skip


@CONSUMERS
async def test_every_engine_event_type_is_known(
    consume: Callable[[Sequence[object]], None], consumer: str
) -> None:
    consume(one_of_each())


@CONSUMERS
async def test_an_unknown_event_type_fails_naming_it(
    consume: Callable[[Sequence[object]], None], consumer: str
) -> None:
    with pytest.raises(
        AssertionError, match=re.escape(f"{consumer} does not know NotAnEngineEvent")
    ):
        consume([NotAnEngineEvent()])


@CONSUMERS
async def test_an_unknown_event_fails_after_known_ones_too(
    consume: Callable[[Sequence[object]], None], consumer: str
) -> None:
    with pytest.raises(
        AssertionError, match=re.escape(f"{consumer} does not know NotAnEngineEvent")
    ):
        consume([*one_of_each()[:3], NotAnEngineEvent()])


# --- double entry -----------------------------------------------------------------------


def _rows(deltas: dict[int, int], *transfers: tuple[int, int, int]) -> BatchRows:
    rows = BatchRows()
    rows.transfers = [(d, c, amount, "trade", "trade", 1, AT) for d, c, amount in transfers]
    rows.account_deltas = deltas
    return rows


def test_balance_changes_that_are_the_transfers_pass() -> None:
    assert_double_entry(_rows({11: -500, 12: 300, 21: 200}, (11, 12, 300), (11, 21, 200)))
    assert_double_entry(_rows({}))


def test_balance_changes_that_do_not_sum_to_zero_are_refused() -> None:
    with pytest.raises(AssertionError, match="sum to -100"):
        assert_double_entry(_rows({11: -500, 12: 400}, (11, 12, 500)))


def test_balance_changes_without_their_transfer_are_refused() -> None:
    with pytest.raises(AssertionError, match="sum to 500"):
        assert_double_entry(_rows({12: 500}))


def test_balance_changes_that_are_not_the_transfers_are_refused() -> None:
    """They sum to zero, but the transfers say 500 moved, not 400."""
    with pytest.raises(AssertionError, match="not the transfers'"):
        assert_double_entry(_rows({11: -400, 12: 400}, (11, 12, 500)))


def test_a_transfer_of_nothing_is_refused() -> None:
    with pytest.raises(AssertionError, match="transfer of 0"):
        assert_double_entry(_rows({}, (11, 12, 0)))


def test_a_translation_that_unbalances_a_batch_fails_before_it_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in the translation (a credit short by 1 paisa) never reaches Postgres."""
    move = batch_module._BatchBuilder.move

    def short_credit(builder: Any, debit: int, credit: int, amount: int, *rest: Any) -> None:
        move(builder, debit, credit, amount, *rest)
        builder.rows.account_deltas[credit] -= 1

    monkeypatch.setattr(batch_module._BatchBuilder, "move", short_credit)
    with pytest.raises(AssertionError, match="sum to -2"):
        _translate([_mint()])


def test_a_trade_that_creates_money_fails_the_batch() -> None:
    """The escrow takes in 2000 for two pairs; the buyers paying 1900 is an engine bug."""
    with pytest.raises(AssertionError, match="creates or destroys money"):
        _translate([_mint(maker_cash_delta=-700)])


def test_a_mint_whose_escrow_is_not_the_contracts_payout_fails_the_batch() -> None:
    with pytest.raises(AssertionError, match="creates or destroys money"):
        _translate([_mint(taker_cash_delta=-1300, escrow_delta=2100)])


def test_a_settlement_whose_payouts_are_not_its_release_fails_the_batch() -> None:
    settlement = Settlement(
        MARKET, "yes", [Payout(TAKER, 2, 0, gross=2000, fee=0, net=2000)], escrow_released=1000, fees=0
    )  # fmt: skip
    with pytest.raises(AssertionError, match="payouts do not add up"):
        _translate([settlement])
