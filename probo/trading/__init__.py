"""Trading: order entry through the engine, and orders, fills and the portfolio as committed."""

from probo.trading.api import dependencies, route_handlers
from probo.trading.queries import orders_of_anyone
from probo.trading.service import TradingService
from probo.trading.types import Fill, Order, average

__all__ = [
    "Fill",
    "Order",
    "average",
    "TradingService",
    "dependencies",
    "orders_of_anyone",
    "route_handlers",
]
