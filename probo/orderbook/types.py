"""The matching core's vocabulary: commands in, events out, rejection codes.

Commands are imperative (`PlaceOrder`), events past tense (`OrderAccepted`); all are
immutable msgspec structs, so the ledger writer and the WebSocket hub can take them as
they are, without looking back into the book.

Prices in commands and order events are in the order's own outcome terms (a NO buy at
300 pays 300 per contract). Trades carry `yes_price`, the book's price; a NO party's
price is `1000 - yes_price`. Cash and contract deltas are signed, per party.
"""

from __future__ import annotations

from typing import Literal

import msgspec

CONTRACT_PAYOUT = 1000  # paise a winning contract pays
QUANTITY_MIN = 1  # contracts per order
QUANTITY_MAX = 100_000
TICK_DEFAULT = 50

Outcome = Literal["yes", "no"]
Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
TimeInForce = Literal["gtc", "ioc", "fok"]
TradeKind = Literal["transfer", "mint", "merge"]
MarketStatus = Literal["open", "paused", "closed"]

# Why an order stopped working before it filled.
CancelReason = Literal[
    "user",  # its owner canceled it
    "ioc_remainder",  # ioc (and market) orders cancel what did not fill at once
    "fok_unfilled",  # a fok that could not fill completely at once
    "self_trade",  # a resting order met by an incoming order of the same user
    "market_closed",  # the market closed with the order open
]

# Codes of refused commands (SPEC §9 where it names them).
RejectCode = Literal[
    "validation_error",
    "invalid_price",
    "invalid_quantity",
    "insufficient_funds",
    "insufficient_position",
    "market_not_open",
    "not_found",
    "order_not_open",
    "too_many_open_orders",
]


def own_price(outcome: str, yes_price: int) -> int:
    """A YES-terms price in `outcome`'s own terms (and back: the map is its own inverse).
    YES at p is NO at 1000 - p: the two prices of one contract pair add up to its payout."""
    return yes_price if outcome == "yes" else CONTRACT_PAYOUT - yes_price


def other_outcome(outcome: str) -> str:
    return "no" if outcome == "yes" else "yes"


class PlaceOrder(msgspec.Struct, frozen=True, gc=False):
    user_id: int
    market_id: int
    outcome: Outcome
    side: Side
    type: OrderType
    quantity: int
    price: int | None = None  # own outcome terms; None for market orders
    time_in_force: TimeInForce = "gtc"
    client_order_id: str | None = None


class CancelOrder(msgspec.Struct, frozen=True, gc=False):
    user_id: int
    market_id: int
    order_id: int


class CancelAll(msgspec.Struct, frozen=True, gc=False):
    user_id: int
    market_id: int


class PauseMarket(msgspec.Struct, frozen=True, gc=False):
    market_id: int


class ResumeMarket(msgspec.Struct, frozen=True, gc=False):
    market_id: int


class CloseMarket(msgspec.Struct, frozen=True, gc=False):
    """Cancel every open order (locks released) and stop trading for good."""

    market_id: int


class ResolveMarket(msgspec.Struct, frozen=True, gc=False):
    """Close the market if it is not closed yet, then pay every holder (`Settlement`)."""

    market_id: int
    outcome: Literal["yes", "no", "void"]
    fee_bps: int


MarketCommand = PauseMarket | ResumeMarket | CloseMarket | ResolveMarket


class SplitPairs(msgspec.Struct, frozen=True, gc=False):
    """Pay CONTRACT_PAYOUT x `quantity` into the market's escrow for `quantity` YES and
    `quantity` NO contracts."""

    user_id: int
    market_id: int
    quantity: int


class MergePairs(msgspec.Struct, frozen=True, gc=False):
    """Give up `quantity` unlocked YES and `quantity` unlocked NO contracts for
    CONTRACT_PAYOUT x `quantity` out of the market's escrow."""

    user_id: int
    market_id: int
    quantity: int


PairsCommand = SplitPairs | MergePairs


class Withdraw(msgspec.Struct, frozen=True, gc=False):
    """Take `amount` plus `fee` out of the user's available cash, once per key: the
    amount toward the user's bank, the fee to the platform. `held_for_review` records
    that an admin decides before the payout is sent."""

    user_id: int
    amount: int
    idempotency_key: str
    fee: int = 0
    held_for_review: bool = False


class OrderAccepted(msgspec.Struct, frozen=True, gc=False):
    order_id: int
    user_id: int
    market_id: int
    outcome: Outcome
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: int  # own terms; a market order's is the extreme limit it works at
    quantity: int
    client_order_id: str | None
    locked_cash: int  # what a buy holds on entry (price x quantity, or a market buy's cost)
    locked_contracts: int  # what a sell holds on entry


class TradeExecuted(msgspec.Struct, frozen=True, gc=False):
    trade_id: int
    market_id: int
    kind: TradeKind
    yes_price: int  # the resting (maker) order's price, in YES terms
    quantity: int
    taker_order_id: int
    taker_user_id: int
    taker_outcome: Outcome
    taker_side: Side
    maker_order_id: int
    maker_user_id: int
    maker_outcome: Outcome
    maker_side: Side
    taker_cash_delta: int
    taker_yes_delta: int
    taker_no_delta: int
    maker_cash_delta: int
    maker_yes_delta: int
    maker_no_delta: int
    escrow_delta: int  # +1000 x quantity on mint, -1000 x quantity on merge, else 0
    taker_remaining: int  # the taker's quantity still to fill after this trade
    maker_remaining: int  # the maker's quantity still resting after this trade


class OrderCanceled(msgspec.Struct, frozen=True, gc=False):
    order_id: int
    user_id: int
    market_id: int
    reason: CancelReason
    canceled_quantity: int  # what was still unfilled
    released_cash: int  # lock given back by this cancel
    released_contracts: int


class OrderRejected(msgspec.Struct, frozen=True, gc=False):
    user_id: int
    market_id: int
    code: RejectCode
    message: str
    client_order_id: str | None = None
    order_id: int | None = None  # for a refused cancel


class OrderDuplicate(msgspec.Struct, frozen=True, gc=False):
    """A `client_order_id` the user already used: the original order stands."""

    user_id: int
    market_id: int
    client_order_id: str
    order_id: int


class MarketStatusChanged(msgspec.Struct, frozen=True, gc=False):
    market_id: int
    status: MarketStatus


class WithdrawalAccepted(msgspec.Struct, frozen=True, gc=False):
    """Cash the engine let leave a user's account: `amount` toward the bank (held in
    payouts_pending until the provider pays it out) and `fee` to the platform."""

    withdrawal_id: int
    user_id: int
    amount: int
    idempotency_key: str
    fee: int = 0
    held_for_review: bool = False


class WithdrawalRejected(msgspec.Struct, frozen=True, gc=False):
    """A withdrawal refused: nothing changed."""

    user_id: int
    amount: int
    idempotency_key: str
    code: Literal["insufficient_funds"]
    message: str


class WithdrawalDuplicate(msgspec.Struct, frozen=True, gc=False):
    """An idempotency key the user already used: the original withdrawal stands."""

    user_id: int
    idempotency_key: str
    withdrawal_id: int
    amount: int  # the original's


class PairsChanged(msgspec.Struct, frozen=True, gc=False):
    """A split (`quantity` pairs made, the user's cash into the escrow) or a merge (pairs
    given back, the escrow's cash to the user). The user's state right after it rides
    along, for the answer."""

    kind: Literal["split", "merge"]
    user_id: int
    market_id: int
    quantity: int
    yes_quantity: int  # the user's contracts after it
    no_quantity: int
    cash: int  # the user's cash after it
    locked: int  # what the user's open buys hold


class Payout(msgspec.Struct, frozen=True, gc=False):
    """What settlement pays one holder out of the market's escrow."""

    user_id: int
    yes_quantity: int
    no_quantity: int
    gross: int  # contracts x their resolution value
    fee: int  # floor(gross x fee_bps / 10000), to platform_fees
    net: int  # gross - fee, to the user


class Settlement(msgspec.Struct, frozen=True, gc=False):
    """The event of a resolution: what every holder is paid out of the escrow.

    The market's positions end at zero; holders paid nothing (the losing side) are
    not listed."""

    market_id: int
    outcome: Literal["yes", "no", "void"]
    payouts: list[Payout]
    escrow_released: int  # equals the sum of gross payouts
    fees: int


Event = (
    OrderAccepted
    | TradeExecuted
    | OrderCanceled
    | OrderRejected
    | OrderDuplicate
    | MarketStatusChanged
    | WithdrawalAccepted
    | WithdrawalRejected
    | WithdrawalDuplicate
    | Settlement
    | PairsChanged
)
