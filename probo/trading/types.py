"""Wire types of the trading API: order entry, orders, fills, the portfolio."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from probo.orderbook import QUANTITY_MAX, QUANTITY_MIN
from probo.web import Id, StorableText

Quantity = Annotated[int, msgspec.Meta(ge=QUANTITY_MIN, le=QUANTITY_MAX)]
ClientOrderId = Annotated[StorableText, msgspec.Meta(min_length=1, max_length=64)]
MarketId = Id
Outcome = Literal["yes", "no"]
Side = Literal["buy", "sell"]
# The range is the widest any tick allows; msgspec does not enforce it, because the
# engine judges a price against its market's tick and answers 422 `invalid_price` (SPEC
# §10). `extra` is litestar's key for schema fields added to the OpenAPI document.
Price = Annotated[
    int,
    msgspec.Meta(
        description="paise per contract in the order's own outcome terms: a multiple of the "
        "market's tick in [tick, 1000 - tick], else 422 invalid_price",
        extra_json_schema={"extra": {"minimum": 1, "maximum": 999}},
    ),
]


class LimitOrderRequest(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type", tag="limit"
):
    """`type: "limit"`: a price is required; gtc (the default) rests, ioc and fok do not."""

    market_id: MarketId
    outcome: Outcome
    side: Side
    quantity: Quantity
    price: Price
    time_in_force: Literal["gtc", "ioc", "fok"] | None = None
    client_order_id: ClientOrderId | None = None


class MarketOrderRequest(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type", tag="market"
):
    """`type: "market"`: no price (ioc at the extreme price), time in force ioc only."""

    market_id: MarketId
    outcome: Outcome
    side: Side
    quantity: Quantity
    price: None = None  # a client may say "no price" with null; any number is refused
    time_in_force: Literal["ioc"] | None = None
    client_order_id: ClientOrderId | None = None


# Tagged on `type`: the OpenAPI document shows a oneOf with a discriminator.
OrderRequest = LimitOrderRequest | MarketOrderRequest


class Fill(msgspec.Struct):
    trade_id: int
    price: int  # the order's own outcome terms
    quantity: int
    kind: Literal["mint", "transfer", "merge"]
    created_at: datetime


class Order(msgspec.Struct):
    id: int
    client_order_id: str | None
    market_id: int
    outcome: str
    side: str
    type: str
    time_in_force: str
    price: int | None
    quantity: int
    status: Literal["open", "filled", "canceled"]
    filled_quantity: int
    remaining_quantity: int
    average_price: float | None  # an integer whenever the fills' average is a whole paisa
    fills: list[Fill]
    created_at: datetime
    cancel_reason: str | None = None


class OrderPage(msgspec.Struct):
    items: list[Order]
    next_cursor: str | None


class CanceledOrders(msgspec.Struct):
    canceled: list[Order]


class UserFill(msgspec.Struct):
    order_id: int
    trade_id: int
    market_id: int
    outcome: str
    side: str
    price: int
    quantity: int
    kind: str
    role: Literal["taker", "maker"]
    created_at: datetime


class FillPage(msgspec.Struct):
    items: list[UserFill]
    next_cursor: str | None


class PortfolioPosition(msgspec.Struct):
    market_id: int
    title: str
    status: str
    yes_quantity: int
    no_quantity: int
    yes_locked: int
    no_locked: int
    yes_average_price: float | None
    no_average_price: float | None
    invested: int
    mark_value: int
    unrealized_pnl: int
    realized_pnl: int
    payout: int


class PortfolioTotals(msgspec.Struct):
    invested: int
    mark_value: int
    unrealized_pnl: int
    realized_pnl: int


class Portfolio(msgspec.Struct):
    positions: list[PortfolioPosition]
    totals: PortfolioTotals


def average(total: int, count: int) -> float | None:
    """A display average: exact integers stay integers, others keep two decimals."""
    if count == 0:
        return None
    whole, rest = divmod(total, count)
    return whole if rest == 0 else round(total / count, 2)


class PairsRequest(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Quantity


class PairsResult(msgspec.Struct):
    """A split or merge, as committed: the user's contracts and cash right after it."""

    market_id: int
    quantity: int
    yes_quantity: int
    no_quantity: int
    balance: int
    available: int


LeaderboardPeriod = Literal["7d", "30d", "all"]


class LeaderboardEntry(msgspec.Struct):
    rank: int
    display_name: str  # `trader-<id>` until the user picks one
    realized_pnl: int
    volume: int  # contracts traded in the period


class LeaderboardPage(msgspec.Struct):
    items: list[LeaderboardEntry]
    next_cursor: str | None
