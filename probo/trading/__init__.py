"""Trading: order entry through the engine, and orders, fills and the portfolio as committed."""

from probo.trading.api import dependencies, route_handlers
from probo.trading.service import TradingService
from probo.trading.store import orders_of_anyone
from probo.trading.types import (
    Fill,
    LimitOrderRequest,
    Order,
    Portfolio,
    PortfolioPosition,
    average,
)
from probo.trading.views import OrderView, order_from_events

__all__ = [
    "Fill",
    "LimitOrderRequest",
    "Order",
    "OrderView",
    "average",
    "TradingService",
    "dependencies",
    "order_from_events",
    "orders_of_anyone",
    "route_handlers",
    "Portfolio",
    "PortfolioPosition",
]
