"""`MarketStats`: what of each market's 24 h figures ages with time — the volume that has
left the window (`volume_24h` is the market's volume less it) and the YES price 24 h
ago (for `price_change_24h`) — kept in `market_stats` so a market list reads them like
any column and never scans trades. The rest is as fresh as the last commit: the volume
and last price are on the market row, open interest is the escrow / 1000.

A market's figures change for two reasons only: something about it committed (a
trade, a resolution, anything else that moves positions), or time passed and its
oldest trade of the window left it. The first is learnt from the ledger writer's
commits (`committed`, right after each commit, in order); the second from the market's
`due_at`. Every `REFRESH_INTERVAL_S` the refresher recomputes, from the trades and
positions indexes, the markets that changed, then those whose `due_at` has come, at
most `MARKETS_PER_REFRESH_MAX` of each per round. Figures are therefore at most about a
second behind the ledger, and exact as of their refresh.

After a start every market is refreshed once (a sweep, newest first, in rounds of the
same size), so nothing committed while the process was away is missed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import asyncpg
from loguru import logger

from probo.infra import connection
from probo.markets import store
from probo.orderbook import Entry, OrderAccepted, OrderCanceled, OrderDuplicate, OrderRejected
from probo.web import BIGINT_MAX

REFRESH_INTERVAL_S = 1.0
MARKETS_PER_REFRESH_MAX = 500  # per round, of each kind (changed, due, swept)
CHANGED_MARKETS_MAX = 100_000  # markets waiting for a refresh; beyond, a sweep catches up
RETRY_AFTER_FAILURE_S = 5.0

# Engine events that move no figure: orders resting or leaving the book. Any other event
# about a market (trades, settlement, whatever comes later) refreshes it.
_MOVES_NO_FIGURE = (OrderAccepted, OrderCanceled, OrderRejected, OrderDuplicate)


class MarketStats:
    def __init__(self, pool: asyncpg.Pool, *, interval_s: float = REFRESH_INTERVAL_S) -> None:
        self._pool = pool
        self._interval_s = interval_s
        self._changed: dict[int, None] = {}  # markets to refresh, in the order they changed
        self._sweep_below: int | None = BIGINT_MAX  # the start-up sweep's position, or done

    def committed(self, batch: Sequence[Entry]) -> None:
        """From the ledger writer, right after a commit: note the markets it changed."""
        changed = self._changed
        for entry in batch:
            for event in entry.events:
                if type(event) in _MOVES_NO_FIGURE:
                    continue
                market_id = getattr(event, "market_id", None)
                if market_id is not None:
                    if len(changed) >= CHANGED_MARKETS_MAX and market_id not in changed:
                        self._sweep_below = BIGINT_MAX  # too many to track: sweep them all
                        continue
                    changed[market_id] = None

    async def run(self) -> None:
        """Refresh rounds until cancelled; a failed round is logged and retried later."""
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.opt(exception=exc).warning("market figures not refreshed")
                await asyncio.sleep(RETRY_AFTER_FAILURE_S)
            await asyncio.sleep(self._interval_s)

    async def refresh(self) -> None:
        """One round: the markets that changed, those due, and the next of the sweep."""
        # Taken out before the refresh: a commit noted while it runs is refreshed next round.
        changed = list(itertools.islice(self._changed, MARKETS_PER_REFRESH_MAX))
        for market_id in changed:
            del self._changed[market_id]
        async with connection(self._pool) as conn:
            if changed:
                try:
                    await store.refresh_stats(conn, changed)
                except BaseException:
                    for market_id in changed:
                        self._changed[market_id] = None
                    raise
            due = await store.stats_due(conn, MARKETS_PER_REFRESH_MAX)
            if due:
                await store.refresh_stats(conn, due)
            if self._sweep_below is not None:
                swept = await store.market_ids_below(
                    conn, self._sweep_below, MARKETS_PER_REFRESH_MAX
                )
                if swept:
                    await store.refresh_stats(conn, swept)
                self._sweep_below = swept[-1] if len(swept) == MARKETS_PER_REFRESH_MAX else None
