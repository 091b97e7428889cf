"""The market clock: closes markets at `closes_at` and finishes interrupted resolutions.

Once a second it asks Postgres for markets past their `closes_at` that are still open
or paused, at most `CLOSES_PER_TICK_MAX` of them, and closes each through the engine
(its open orders canceled, locks released), so a market closes within a couple of
seconds of its time. On start it first finishes any resolution that a restart
interrupted before its payouts committed.
"""

from __future__ import annotations

import asyncio

from loguru import logger

from probo.markets.service import MarketService

TICK_S = 1.0
CLOSES_PER_TICK_MAX = 50  # markets closed per tick; the rest wait for the next one


async def run_market_clock(markets: MarketService) -> None:
    resolutions_finished = False
    while True:
        try:
            if not resolutions_finished:
                await markets.finish_resolutions()
                resolutions_finished = True
            await markets.close_due(CLOSES_PER_TICK_MAX)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Postgres away: try again next tick
            logger.warning("market clock tick failed: {!r}", exc)
        await asyncio.sleep(TICK_S)
