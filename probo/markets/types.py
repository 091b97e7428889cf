"""Wire types of the markets API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from probo.web import StorableText

MarketStatus = Literal["open", "paused", "closed", "resolved"]
Outcome = Literal["yes", "no", "void"]
Interval = Literal["1m", "5m", "1h", "1d"]
Sort = Literal["new", "closing", "volume"]


class MarketCreate(msgspec.Struct, forbid_unknown_fields=True):
    title: Annotated[StorableText, msgspec.Meta(min_length=1, max_length=200)]
    closes_at: Annotated[datetime, msgspec.Meta(tz=True)]
    description: Annotated[StorableText, msgspec.Meta(max_length=5000)] = ""
    category: Annotated[StorableText, msgspec.Meta(max_length=64)] = ""
    tick: Annotated[int, msgspec.Meta(ge=1, le=100)] = 50
    settlement_fee_bps: Annotated[int, msgspec.Meta(ge=0, le=2000)] = 0
    rules: Annotated[StorableText, msgspec.Meta(max_length=10_000)] = ""


class Market(msgspec.Struct):
    id: int
    title: str
    description: str
    category: str
    rules: str
    status: MarketStatus
    outcome: Outcome | None
    tick: int
    settlement_fee_bps: int
    closes_at: datetime
    created_at: datetime
    resolved_at: datetime | None
    best_yes_bid: int | None  # what buyers of YES bid now
    best_no_bid: int | None
    last_price: int | None  # YES price of the last trade
    volume: int  # contracts traded
    volume_24h: int  # contracts traded in the last 24 h
    price_change_24h: int | None  # YES last price now minus 24 h ago
    open_interest: int  # YES contracts outstanding


class Resolution(msgspec.Struct, forbid_unknown_fields=True):
    outcome: Outcome


class MarketPage(msgspec.Struct):
    items: list[Market]
    next_cursor: str | None


class Trade(msgspec.Struct):
    id: int
    price: int  # YES terms
    quantity: int
    kind: str
    taker_outcome: str
    taker_side: str
    created_at: datetime


class TradePage(msgspec.Struct):
    items: list[Trade]
    next_cursor: str | None


class Candle(msgspec.Struct):
    start: datetime
    open: int  # YES prices of the interval's first, highest, lowest and last trade
    high: int
    low: int
    close: int
    volume: int  # contracts traded in the interval


class CandlePage(msgspec.Struct):
    items: list[Candle]
    next_cursor: str | None


class MarketEdit(msgspec.Struct, forbid_unknown_fields=True):
    """What an admin may change on an open or paused market; a field left out (or
    null) stays as it is. `closes_at` may only move later."""

    title: Annotated[StorableText, msgspec.Meta(min_length=1, max_length=200)] | None = None
    description: Annotated[StorableText, msgspec.Meta(max_length=5000)] | None = None
    category: Annotated[StorableText, msgspec.Meta(max_length=64)] | None = None
    rules: Annotated[StorableText, msgspec.Meta(max_length=10_000)] | None = None
    closes_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class Category(msgspec.Struct):
    category: str
    open_markets: int


class CategoryList(msgspec.Struct):
    items: list[Category]
    next_cursor: str | None = None  # the §10 list shape; every category fits one page


class Watch(msgspec.Struct):
    market_id: int
    watched: bool
