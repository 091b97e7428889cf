"""Markets: creation, lifecycle and resolution, the market clock, and market data."""

from probo.markets.api import dependencies, route_handlers
from probo.markets.scheduler import run_market_clock
from probo.markets.service import MarketService

__all__ = ["MarketService", "dependencies", "route_handlers", "run_market_clock"]
