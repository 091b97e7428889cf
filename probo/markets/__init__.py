"""Markets: creation and market data (lifecycle and settlement come with their own work)."""

from probo.markets.api import dependencies, route_handlers
from probo.markets.service import MarketService

__all__ = ["MarketService", "dependencies", "route_handlers"]
