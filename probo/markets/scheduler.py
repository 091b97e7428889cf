"""The market clock: closes markets at `closes_at` and finishes recorded resolutions.

Once a second it asks Postgres for markets past their `closes_at` that are still open
or paused, at most `CLOSES_PER_TICK_MAX` of them, and closes them through the engine
(their open orders canceled, locks released), so a market closes within a couple of
seconds of its time. Once a second too, it pays resolutions that were recorded but have
not committed, at most `RESOLUTIONS_PER_TICK_MAX` of them: after a restart, or after an
acknowledgement that timed out. The two run as separate loops, each with its own
guard, so neither a failing resolution nor a slow close holds the other back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from loguru import logger

from probo.markets.service import MarketService

TICK_S = 1.0
CLOSES_PER_TICK_MAX = 50  # markets closed per tick; the rest wait for the next one
RESOLUTIONS_PER_TICK_MAX = 50  # recorded resolutions retried per tick


async def run_market_clock(markets: MarketService) -> None:
    await asyncio.gather(
        _every_tick("resolutions", lambda: markets.finish_resolutions(RESOLUTIONS_PER_TICK_MAX)),
        _every_tick("closes", lambda: markets.close_due(CLOSES_PER_TICK_MAX)),
    )


async def _every_tick(what: str, step: Callable[[], Awaitable[int]]) -> None:
    """Run `step` once a tick; a failure (Postgres away, a bug) is logged and tried again."""
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("market clock: {} failed: {!r}", what, exc)
        await asyncio.sleep(TICK_S)
