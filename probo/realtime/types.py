"""The WebSocket messages of SPEC §8 and §10, as msgspec structs (encoded once per room).

Clients send `{"op": "subscribe" | "unsubscribe", "channel": "market:<id>" | "user"}`
or `{"op": "ping"}`. The server sends the `type`s below; every message about a
channel names it in `channel`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from probo.trading import Order


class ClientMessage(msgspec.Struct, forbid_unknown_fields=True):
    op: Literal["subscribe", "unsubscribe", "ping"]
    channel: str | None = None


class Level(msgspec.Struct):
    price: int
    quantity: int


class OrderBook(msgspec.Struct):
    """SPEC §5's book: `yes` is what buyers of YES bid, `no` what buyers of NO bid."""

    market_id: int
    seq: int
    yes: list[Level]
    no: list[Level]


class Snapshot(msgspec.Struct, tag_field="type", tag="snapshot"):
    channel: str
    seq: int
    book: OrderBook


class LevelChange(msgspec.Struct):
    outcome: Literal["yes", "no"]
    price: int
    quantity: int  # the level's new total; 0 = gone


class BookDelta(msgspec.Struct, tag_field="type", tag="book"):
    channel: str
    seq: int  # one more than the previous book message's (or the snapshot's)
    changes: list[LevelChange]


class TradeView(msgspec.Struct):
    id: int
    price: int  # YES terms
    quantity: int
    kind: str
    taker_outcome: str
    taker_side: str
    created_at: datetime


class Trades(msgspec.Struct, tag_field="type", tag="trade"):
    """The trades committed in one coalescing window, oldest first."""

    channel: str
    trades: list[TradeView]


class MarketChanged(msgspec.Struct, tag_field="type", tag="market"):
    channel: str
    market_id: int
    status: Literal["open", "paused", "closed", "resolved"]
    outcome: Literal["yes", "no", "void"] | None = None


class TickerLine(msgspec.Struct, tag_field="type", tag="ticker"):
    """One market's line on the `ticker` channel, sent when one of its values changed."""

    market_id: int
    best_yes_bid: int | None  # what buyers of YES bid now
    best_no_bid: int | None
    last_price: int | None  # YES price of the last trade
    volume: int  # contracts traded
    channel: str = "ticker"


class OrderUpdate(msgspec.Struct, tag_field="type", tag="order"):
    order: Order
    channel: str = "user"


class FillView(msgspec.Struct):
    order_id: int
    trade_id: int
    price: int  # the order's own outcome terms
    quantity: int
    kind: str


class FillUpdate(msgspec.Struct, tag_field="type", tag="fill"):
    fill: FillView
    channel: str = "user"


class BalanceUpdate(msgspec.Struct, tag_field="type", tag="balance"):
    balance: int
    locked: int
    available: int
    channel: str = "user"


class Subscribed(msgspec.Struct, tag_field="type", tag="subscribed"):
    channel: str


class Unsubscribed(msgspec.Struct, tag_field="type", tag="unsubscribed"):
    channel: str


class Pong(msgspec.Struct, tag_field="type", tag="pong"):
    pass


class Error(msgspec.Struct, tag_field="type", tag="error"):
    code: str
    message: str
    channel: str | None = None
