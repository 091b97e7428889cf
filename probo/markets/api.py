"""Markets HTTP routes: admin creation and lifecycle, public market data."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import delete, get, patch, post, put
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter

from probo.auth import Claims
from probo.markets.service import MarketService
from probo.markets.types import (
    CandlePage,
    CategoryList,
    Interval,
    Market,
    MarketCreate,
    MarketEdit,
    MarketPage,
    Resolution,
    Sort,
    TradePage,
    Watch,
)
from probo.realtime import OrderBook
from probo.services import services_of
from probo.web import (
    BIGINT_MAX,
    Cursor,
    Limit,
    decode_cursor,
    error_responses,
    storable_text_parameter,
)

MarketId = Annotated[int, Parameter(ge=1, le=BIGINT_MAX)]
# An empty value is the same as none (`?q=&category=&status=&sort=` lists everything).
StatusFilter = Annotated[
    Literal["open", "paused", "closed", "resolved", ""] | None, Parameter(default=None)
]
CategoryFilter = Annotated[str | None, storable_text_parameter(max_length=64)]
SearchWords = Annotated[
    str | None,
    storable_text_parameter(
        max_length=100,
        description="words of the title or description; each matches a word it begins",
    ),
]
SortOrder = Annotated[
    Sort | Literal[""],
    Parameter(
        default="new",
        description="new: newest first; closing: soonest closes_at first; "
        "volume: most contracts traded in 24 h first",
    ),
]
Depth = Annotated[int | None, Parameter(default=None, ge=1, le=1000, description="levels per side")]


LIFECYCLE_ERRORS = error_responses(
    400, 401, 403, 404, 409, 503, codes={409: "invalid_transition, market_resolved"}
)
MARKET_DATA_ERRORS = error_responses(400, 404, 503)


def provide_market_service(state: State) -> MarketService:
    return services_of(state).markets


dependencies = {"markets": Provide(provide_market_service, sync_to_thread=False)}


@post(
    "/api/v1/admin/markets",
    status_code=201,
    tags=["admin"],
    summary="Create a market",
    responses=error_responses(400, 401, 403, 413, 422, 503),
)
async def create_market(data: MarketCreate, admin: Claims, markets: MarketService) -> Market:
    return await markets.create(data)


@post(
    "/api/v1/admin/markets/{market_id:int}/pause",
    status_code=200,
    tags=["admin"],
    summary="Pause: no new orders, no matching; cancels allowed",
    responses=LIFECYCLE_ERRORS,
)
async def pause_market(market_id: MarketId, admin: Claims, markets: MarketService) -> Market:
    return await markets.pause(market_id)


@post(
    "/api/v1/admin/markets/{market_id:int}/resume",
    status_code=200,
    tags=["admin"],
    summary="Resume a paused market",
    responses=LIFECYCLE_ERRORS,
)
async def resume_market(market_id: MarketId, admin: Claims, markets: MarketService) -> Market:
    return await markets.resume(market_id)


@post(
    "/api/v1/admin/markets/{market_id:int}/close",
    status_code=200,
    tags=["admin"],
    summary="Close: every open order canceled, its lock released",
    responses=LIFECYCLE_ERRORS,
)
async def close_market(market_id: MarketId, admin: Claims, markets: MarketService) -> Market:
    return await markets.close(market_id)


@post(
    "/api/v1/admin/markets/{market_id:int}/resolve",
    status_code=200,
    tags=["admin"],
    summary="Resolve yes, no or void and pay every holder (closes the market first)",
    responses=error_responses(
        400, 401, 403, 404, 409, 413, 422, 503, codes={409: "market_resolved"}
    ),
)
async def resolve_market(
    market_id: MarketId, data: Resolution, admin: Claims, markets: MarketService
) -> Market:
    return await markets.resolve(market_id, data.outcome)


@get(
    "/api/v1/markets",
    tags=["markets"],
    summary="Markets: search, filter, sort (newest first by default)",
    responses=error_responses(400, 503),
)
async def list_markets(
    markets: MarketService,
    q: SearchWords = None,
    status: StatusFilter = None,
    category: CategoryFilter = None,
    sort: SortOrder = "new",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> MarketPage:
    return await markets.list(
        q=q or None,
        status=status or None,
        category=category or None,
        sort=sort or "new",
        limit=limit,
        cursor=cursor,
    )


@get(
    "/api/v1/categories",
    tags=["markets"],
    summary="Categories with open markets, the most first",
    responses=error_responses(503),
)
async def list_categories(markets: MarketService) -> CategoryList:
    return await markets.categories()


@patch(
    "/api/v1/admin/markets/{market_id:int}",
    status_code=200,
    tags=["admin"],
    summary="Edit a market (title, description, category, rules, a later closes_at)",
    responses=error_responses(
        400,
        401,
        403,
        404,
        409,
        413,
        422,
        503,
        codes={409: "invalid_transition (closed or resolved)", 422: "validation_error"},
    ),
)
async def edit_market(
    market_id: MarketId, data: MarketEdit, admin: Claims, markets: MarketService
) -> Market:
    return await markets.edit(market_id, data)


@put(
    "/api/v1/watchlist/{market_id:int}",
    status_code=200,
    tags=["watchlist"],
    summary="Watch a market (again: no change)",
    responses=error_responses(400, 401, 403, 404, 503),
)
async def watch_market(market_id: MarketId, principal: Claims, markets: MarketService) -> Watch:
    return await markets.watch(principal.user_id, market_id)


@delete(
    "/api/v1/watchlist/{market_id:int}",
    status_code=200,
    tags=["watchlist"],
    summary="Stop watching a market (not watched: no change)",
    responses=error_responses(400, 401, 403, 404, 503),
)
async def unwatch_market(market_id: MarketId, principal: Claims, markets: MarketService) -> Watch:
    return await markets.unwatch(principal.user_id, market_id)


@get(
    "/api/v1/watchlist",
    tags=["watchlist"],
    summary="The markets I watch, the most recently watched first",
    responses=error_responses(400, 401, 503),
)
async def watchlist(
    principal: Claims, markets: MarketService, limit: Limit = 50, cursor: Cursor = None
) -> MarketPage:
    return await markets.watchlist(principal.user_id, limit=limit, cursor=cursor)


@get(
    "/api/v1/markets/{market_id:int}",
    tags=["markets"],
    summary="One market",
    responses=MARKET_DATA_ERRORS,
)
async def get_market(market_id: MarketId, markets: MarketService) -> Market:
    return await markets.get(market_id)


@get(
    "/api/v1/markets/{market_id:int}/orderbook",
    tags=["markets"],
    summary="Aggregated book, best first",
    responses=MARKET_DATA_ERRORS,
)
async def get_order_book(
    market_id: MarketId, markets: MarketService, depth: Depth = None
) -> OrderBook:
    return await markets.order_book(market_id, depth)


@get(
    "/api/v1/markets/{market_id:int}/trades",
    tags=["markets"],
    summary="Trades, newest first",
    responses=MARKET_DATA_ERRORS,
)
async def list_trades(
    market_id: MarketId, markets: MarketService, limit: Limit = 50, cursor: Cursor = None
) -> TradePage:
    return await markets.trades(market_id, limit=limit, before_id=decode_cursor(cursor))


@get(
    "/api/v1/markets/{market_id:int}/candles",
    tags=["markets"],
    summary="OHLCV of the YES price, newest first",
    responses=MARKET_DATA_ERRORS,
)
async def list_candles(
    market_id: MarketId,
    markets: MarketService,
    interval: Interval = "1m",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> CandlePage:
    return await markets.candles(market_id, interval, limit=limit, before=decode_cursor(cursor))


route_handlers = [
    create_market,
    pause_market,
    resume_market,
    close_market,
    resolve_market,
    edit_market,
    list_markets,
    list_categories,
    watch_market,
    unwatch_market,
    watchlist,
    get_market,
    get_order_book,
    list_trades,
    list_candles,
]
