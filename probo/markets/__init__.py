"""Markets: creation, lifecycle and resolution, the market clock, market data, discovery
(search, sorts, 24 h figures, categories) and the watchlist."""

from probo.markets.api import dependencies, route_handlers
from probo.markets.scheduler import run_market_clock
from probo.markets.service import MarketService
from probo.markets.stats import MarketStats
from probo.markets.store import trade_totals
from probo.markets.types import Market, MarketCreate

__all__ = [
    "Market",
    "MarketCreate",
    "MarketService",
    "MarketStats",
    "dependencies",
    "route_handlers",
    "run_market_clock",
    "trade_totals",
]
