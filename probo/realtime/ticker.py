"""`Ticker`: the `ticker` channel (SPEC §12), one line per market for every market:
`{type: "ticker", market_id, best_yes_bid, best_no_bid, last_price, volume}`, sent
when one of those changed, from committed state only.

The hub tells it which markets a committed command touched (`touched`, with the
command's trades) and asks it at the end of each coalescing window for the lines of
markets whose line now differs from the last one published (`take`): a market that
moved and came back within the window sends nothing, and one that moved several times
sends one line. At most `MARKETS_PER_FLUSH_MAX` markets are looked at per window; the
rest wait for the next one, so a burst over every market reaches subscribers in
bounded pieces.

Best bids come from the hub's committed books; last price and volume (contracts
traded, as `GET /markets` shows them) start from the market rows, read once when the
process starts (`load`), and follow the committed trades. Subscribing sends no
snapshot: clients read `GET /api/v1/markets` and apply the lines from then on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

import msgspec

from probo.orderbook import TradeExecuted
from probo.realtime.subscriber import Subscriber
from probo.realtime.types import TickerLine

TICKER_CHANNEL = "ticker"
MARKETS_PER_FLUSH_MAX = 200  # market lines looked at (and at most sent) per window

_encode = msgspec.json.Encoder().encode

# (best_yes_bid, best_no_bid, last_price, volume)
Line = tuple[int | None, int | None, int | None, int]


class Ticker:
    __slots__ = ("_best_bids", "_trades", "_sent", "_touched", "room")

    def __init__(self, best_bids: Callable[[int], tuple[int | None, int | None]]) -> None:
        self._best_bids = best_bids  # market -> (best YES bid, best NO bid), committed
        self._trades: dict[int, tuple[int | None, int]] = {}  # market -> (last price, volume)
        self._sent: dict[int, Line] = {}  # market -> the line subscribers have
        self._touched: dict[int, None] = {}  # markets to look at, in the order touched
        self.room: set[Subscriber] = set()

    def load(self, markets: Iterable[tuple[int, int | None, int]]) -> None:
        """(market id, last price, volume) of every market, as committed, before any
        later commit is applied: the lines subscribers are assumed to have."""
        for market_id, last_price, volume in markets:
            self._trades[market_id] = (last_price, volume)
            self._sent[market_id] = (*self._best_bids(market_id), last_price, volume)

    def touched(self, market_id: int, trades: Sequence[TradeExecuted]) -> None:
        """A committed command about this market, with its trades (oldest first)."""
        if trades:
            last_price, volume = self._trades.get(market_id, (None, 0))
            for trade in trades:
                volume += trade.quantity
            self._trades[market_id] = (trades[-1].yes_price, volume)
        self._touched[market_id] = None

    @property
    def pending(self) -> bool:
        return bool(self._touched)

    def take(self) -> list[bytes]:
        """The encoded lines of up to `MARKETS_PER_FLUSH_MAX` touched markets that
        changed since last published; the other touched markets wait for the next call."""
        touched = self._touched
        taken = list(itertools.islice(touched, MARKETS_PER_FLUSH_MAX))
        payloads: list[bytes] = []
        for market_id in taken:
            del touched[market_id]
            last_price, volume = self._trades.get(market_id, (None, 0))
            line: Line = (*self._best_bids(market_id), last_price, volume)
            if self._sent.get(market_id, (None, None, None, 0)) == line:
                continue
            self._sent[market_id] = line
            payloads.append(_encode(TickerLine(market_id, *line)))
        return payloads

    def join(self, subscriber: Subscriber) -> None:
        self.room.add(subscriber)

    def leave(self, subscriber: Subscriber) -> None:
        self.room.discard(subscriber)
