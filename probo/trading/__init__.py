"""Trading: order entry through the engine, and orders, fills and the portfolio as committed."""

from probo.trading.api import dependencies, route_handlers
from probo.trading.service import TradingService

__all__ = ["TradingService", "dependencies", "route_handlers"]
