"""The demo's background task: seed if the database is empty, then run the bot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from probo.demo.bot import ROUND_INTERVAL_S, LiquidityBot
from probo.demo.seed import seed

if TYPE_CHECKING:
    from probo.services import Services


async def run_demo(services: Services, *, round_interval_s: float = ROUND_INTERVAL_S) -> None:
    """Until cancelled; never raises. A failed seeding is logged and leaves no bot running
    (the next start tries again only if it created no market)."""
    try:
        await seed(
            pool=services.pool,
            auth=services.auth,
            markets=services.markets,
            wallet=services.wallet,
        )
        bot = LiquidityBot(
            pool=services.pool,
            auth=services.auth,
            markets=services.markets,
            trading=services.trading,
            wallet=services.wallet,
            round_interval_s=round_interval_s,
        )
        await bot.run()
    except Exception:
        logger.exception("the demo stopped")
