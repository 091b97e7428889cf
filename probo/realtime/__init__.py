"""Live feeds over WebSocket (SPEC §8): market rooms and a private user channel, fed
only from committed ledger batches, in commit order."""

from probo.realtime.api import route_handlers
from probo.realtime.hub import Hub
from probo.realtime.subscriber import RAW_SEND_SCOPE_KEY
from probo.realtime.types import Level, OrderBook

__all__ = ["RAW_SEND_SCOPE_KEY", "Hub", "Level", "OrderBook", "route_handlers"]
