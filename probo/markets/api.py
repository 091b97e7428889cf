"""Markets HTTP routes: admin creation and public market data."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter

from probo.auth import Claims
from probo.markets.service import MarketService
from probo.markets.types import Market, MarketCreate, MarketPage, OrderBook, TradePage
from probo.pagination import Cursor, Limit, decode_cursor

MarketId = Annotated[int, Parameter(ge=1, le=2**63 - 1)]
StatusFilter = Annotated[
    Literal["open", "paused", "closed", "resolved"] | None, Parameter(default=None)
]
CategoryFilter = Annotated[str | None, Parameter(default=None, max_length=64)]
Depth = Annotated[int | None, Parameter(default=None, ge=1, le=1000, description="levels per side")]


def provide_market_service(state: State) -> MarketService:
    return state.markets


dependencies = {"markets": Provide(provide_market_service, sync_to_thread=False)}


@post("/api/v1/admin/markets", status_code=201, tags=["admin"], summary="Create a market")
async def create_market(data: MarketCreate, admin: Claims, markets: MarketService) -> Market:
    return await markets.create(data)


@get("/api/v1/markets", tags=["markets"], summary="Markets, newest first")
async def list_markets(
    markets: MarketService,
    status: StatusFilter = None,
    category: CategoryFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> MarketPage:
    return await markets.list(
        status=status, category=category, limit=limit, before_id=decode_cursor(cursor)
    )


@get("/api/v1/markets/{market_id:int}", tags=["markets"], summary="One market")
async def get_market(market_id: MarketId, markets: MarketService) -> Market:
    return await markets.get(market_id)


@get(
    "/api/v1/markets/{market_id:int}/orderbook",
    tags=["markets"],
    summary="Aggregated book, best first",
)
async def get_order_book(
    market_id: MarketId, markets: MarketService, depth: Depth = None
) -> OrderBook:
    return await markets.order_book(market_id, depth)


@get("/api/v1/markets/{market_id:int}/trades", tags=["markets"], summary="Trades, newest first")
async def list_trades(
    market_id: MarketId, markets: MarketService, limit: Limit = 50, cursor: Cursor = None
) -> TradePage:
    return await markets.trades(market_id, limit=limit, before_id=decode_cursor(cursor))


route_handlers = [create_market, list_markets, get_market, get_order_book, list_trades]
