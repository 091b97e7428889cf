"""The first-run demo (dev only, `PROBO_DEMO`): demo markets and bot users seeded once
into a database with no market, and a liquidity bot that keeps those markets' books
two-sided and trading. It owns no rule and no money path: markets are created, bots
signed up and funded, and orders placed through the same services a user's requests go
through."""

from probo.demo.bot import HOLDING_MAX, ROUND_INTERVAL_S, LiquidityBot
from probo.demo.run import run_demo
from probo.demo.seed import BOTS, DEMO_MARKETS, bot_ids, seed

__all__ = [
    "BOTS",
    "DEMO_MARKETS",
    "HOLDING_MAX",
    "ROUND_INTERVAL_S",
    "LiquidityBot",
    "bot_ids",
    "run_demo",
    "seed",
]
