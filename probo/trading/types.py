"""Wire types of the trading API: order entry, orders, fills, the portfolio."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Quantity = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
ClientOrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MarketId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class OrderRequest(msgspec.Struct, forbid_unknown_fields=True):
    market_id: MarketId
    outcome: Literal["yes", "no"]
    side: Literal["buy", "sell"]
    type: Literal["limit", "market"]
    quantity: Quantity
    price: int | None = None  # paise in the order's own outcome terms; none for market orders
    time_in_force: Literal["gtc", "ioc", "fok"] | None = None
    client_order_id: ClientOrderId | None = None


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
