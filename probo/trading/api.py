"""Trading HTTP routes: orders, fills, the portfolio and one position, split and merge, the leaderboard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from litestar import Response, delete, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter

from probo.auth import Claims
from probo.services import services_of
from probo.trading.service import TradingService
from probo.trading.types import (
    CanceledOrders,
    FillPage,
    LeaderboardPage,
    LeaderboardPeriod,
    Order,
    OrderPage,
    OrderRequest,
    PairsRequest,
    PairsResult,
    Portfolio,
    PortfolioPosition,
)
from probo.web import (
    BIGINT_MAX,
    Cursor,
    Limit,
    decode_cursor,
    error_responses,
    repeat_response,
    storable_text_parameter,
)

OrderId = Annotated[int, Parameter(ge=1, le=BIGINT_MAX)]
PathMarketId = Annotated[int, Parameter(ge=1, le=BIGINT_MAX)]
MarketFilter = Annotated[int | None, Parameter(ge=1, le=BIGINT_MAX)]
ClientOrderIdFilter = Annotated[str | None, storable_text_parameter(max_length=64)]
StatusFilter = Annotated[Literal["open", "filled", "canceled"] | None, Parameter(default=None)]


# The example order of the published API (the contract test opens a market with this id).
ORDER_EXAMPLE = Example(
    summary="Buy 10 YES at 500 paise",
    value={
        "market_id": 100_000,
        "outcome": "yes",
        "side": "buy",
        "type": "limit",
        "price": 500,
        "quantity": 10,
        "time_in_force": "gtc",
    },
)


def provide_trading_service(state: State) -> TradingService:
    return services_of(state).trading


dependencies = {"trading": Provide(provide_trading_service, sync_to_thread=False)}


@post(
    "/api/v1/orders",
    tags=["trading"],
    summary="Place an order",
    description="201 with the order once its result has committed; 200 with the original for a repeated "
    "client_order_id; 503 unavailable if it could not be confirmed within PROBO_ACK_TIMEOUT_MS.",
    responses=error_responses(
        400,
        401,
        403,
        404,
        409,
        413,
        422,
        429,
        503,
        codes={
            404: "not_found (the market)",
            409: "market_not_open",
            422: "validation_error, invalid_price, invalid_quantity, insufficient_funds, "
            "insufficient_position, too_many_open_orders",
        },
    )
    | repeat_response(Order, "order (a repeated client_order_id)"),
)
async def place_order(
    data: Annotated[OrderRequest, Body(examples=[ORDER_EXAMPLE])], principal: Claims, state: State
) -> Response[Order]:
    # The service from `state`, not a second dependency: litestar resolves two
    # dependencies in an anyio task group, a measurable cost on the hottest route.
    order, created = await services_of(state).trading.place(principal.user_id, data)
    return Response(order, status_code=201 if created else 200)


@delete(
    "/api/v1/orders/{order_id:int}",
    status_code=200,
    tags=["trading"],
    summary="Cancel an open order",
    responses=error_responses(400, 401, 403, 404, 409, 503, codes={409: "order_not_open"}),
)
async def cancel_order(order_id: OrderId, principal: Claims, trading: TradingService) -> Order:
    return await trading.cancel(principal.user_id, order_id)


@delete(
    "/api/v1/orders",
    status_code=200,
    tags=["trading"],
    summary="Cancel all my open orders (in one market)",
    responses=error_responses(400, 401, 403, 404, 503),
)
async def cancel_all_orders(
    principal: Claims, trading: TradingService, market_id: MarketFilter = None
) -> CanceledOrders:
    return CanceledOrders(canceled=await trading.cancel_all(principal.user_id, market_id))


@get(
    "/api/v1/orders",
    tags=["trading"],
    summary="My orders, newest first",
    responses=error_responses(400, 401, 503),
)
async def list_orders(
    principal: Claims,
    trading: TradingService,
    status: StatusFilter = None,
    market_id: MarketFilter = None,
    client_order_id: ClientOrderIdFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> OrderPage:
    return await trading.orders(
        principal.user_id,
        status=status,
        market_id=market_id,
        client_order_id=client_order_id,
        limit=limit,
        before_id=decode_cursor(cursor),
    )


@get(
    "/api/v1/orders/{order_id:int}",
    tags=["trading"],
    summary="One of my orders, with its fills",
    responses=error_responses(400, 401, 404, 503),
)
async def get_order(order_id: OrderId, principal: Claims, trading: TradingService) -> Order:
    return await trading.order(principal.user_id, order_id)


@get(
    "/api/v1/fills",
    tags=["trading"],
    summary="My fills, newest first",
    responses=error_responses(400, 401, 503),
)
async def list_fills(
    principal: Claims,
    trading: TradingService,
    market_id: MarketFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> FillPage:
    return await trading.fills(
        principal.user_id, market_id=market_id, limit=limit, before_id=decode_cursor(cursor)
    )


@get(
    "/api/v1/portfolio",
    tags=["trading"],
    summary="My positions with P&L",
    responses=error_responses(401, 503),
)
async def portfolio(principal: Claims, trading: TradingService) -> Portfolio:
    return await trading.portfolio(principal.user_id)


@get(
    "/api/v1/portfolio/{market_id:int}",
    tags=["trading"],
    summary="My position in one market (zeros when I hold none)",
    responses=error_responses(400, 401, 404, 503),
)
async def market_position(
    market_id: PathMarketId, principal: Claims, trading: TradingService
) -> PortfolioPosition:
    return await trading.position(principal.user_id, market_id)


def _pairs_route(action: str, summary: str, shortfall: str) -> Callable[..., Any]:
    """The route of a split or a merge: the same shape, its own refusal."""
    return post(
        f"/api/v1/markets/{{market_id:int}}/{action}",
        tags=["trading"],
        summary=summary,
        description="Ordered with the market's orders, answered after commit. "
        f"409 market_not_open; 422 {shortfall}.",
        responses=error_responses(
            400,
            401,
            404,
            409,
            413,
            422,
            429,
            503,
            codes={409: "market_not_open", 422: f"validation_error, {shortfall}"},
        ),
    )


@_pairs_route(
    "split",
    "Pay 1000 paise per pair into the escrow for a YES and a NO contract",
    "insufficient_funds",
)
async def split(
    market_id: PathMarketId, data: PairsRequest, principal: Claims, trading: TradingService
) -> PairsResult:
    return await trading.pairs(principal.user_id, market_id, "split", data.quantity)


@_pairs_route(
    "merge",
    "Give back unlocked YES + NO pairs for 1000 paise each out of the escrow",
    "insufficient_position",
)
async def merge(
    market_id: PathMarketId, data: PairsRequest, principal: Claims, trading: TradingService
) -> PairsResult:
    return await trading.pairs(principal.user_id, market_id, "merge", data.quantity)


@get(
    "/api/v1/leaderboard",
    tags=["trading"],
    summary="Realised P&L per trader in a period, best first",
    description="`period` is 7d, 30d or all (default 7d). Traders without a display name "
    "appear as trader-<id>.",
    responses=error_responses(400, 503),
)
async def leaderboard(
    trading: TradingService,
    period: LeaderboardPeriod = "7d",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> LeaderboardPage:
    return await trading.leaderboard(period, limit, decode_cursor(cursor) or 0)


route_handlers = [
    leaderboard,
    split,
    merge,
    place_order,
    cancel_order,
    cancel_all_orders,
    list_orders,
    get_order,
    list_fills,
    portfolio,
    market_position,
]
