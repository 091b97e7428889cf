"""Seeding the demo, once: markets created as an admin creates them, bots signed up as a
first login signs a user up (the bonus included) and funded by deposits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import asyncpg
from loguru import logger

from probo.auth import AuthService
from probo.demo import store
from probo.infra import connection
from probo.markets import MarketCreate, MarketService
from probo.wallet import WalletService
from probo.web import ApiError

# The bots: two market makers and a taker. Phones in a block no test or person uses
# here; their SMS, were any sent, would go to the dev outbox like everyone's.
BOTS = (
    ("+919999900001", "demo_maker_asha"),
    ("+919999900002", "demo_maker_ravi"),
    ("+919999900003", "demo_taker_meera"),
)
BOT_DEPOSIT = 1_000_000  # paise (₹10,000) per bot at seeding; the bot tops up below
SEED_DEPOSIT_KEY = "demo-seed"


class DemoMarket(NamedTuple):
    title: str
    category: str
    description: str
    weeks: int  # closes this many weeks after seeding


DEMO_MARKETS = (
    DemoMarket(
        "Will India score 300 or more in their next ODI innings?",
        "Cricket",
        "Resolves YES if India's first completed batting innings in their next men's ODI "
        "reaches 300 runs.",
        3,
    ),
    DemoMarket(
        "Will the RBI cut the repo rate at its next policy meeting?",
        "Economy",
        "Resolves YES if the Monetary Policy Committee announces a lower repo rate at its "
        "next scheduled meeting.",
        6,
    ),
    DemoMarket(
        "Will Mumbai record more than 100 mm of rain in a single day this month?",
        "Weather",
        "Resolves YES if the IMD Santacruz observatory reports over 100 mm in any 24 hours "
        "before the market closes.",
        4,
    ),
    DemoMarket(
        "Will the Nifty 50 close higher than it opened this month?",
        "Finance",
        "Resolves YES if the Nifty 50's close on the last trading day before the market "
        "closes is above its open on the first trading day of the month.",
        4,
    ),
    DemoMarket(
        "Will the next big Friday Bollywood release earn ₹50 crore in its opening weekend?",
        "Entertainment",
        "Resolves YES if the widest Hindi release of the coming Friday reports a domestic "
        "net opening weekend of at least ₹50 crore.",
        2,
    ),
)


async def seed(
    *, pool: asyncpg.Pool, auth: AuthService, markets: MarketService, wallet: WalletService
) -> list[int]:
    """The demo's markets and bots, if the database has no market at all; the ids of the
    markets created (none when it had markets: a restart never seeds twice)."""
    async with connection(pool) as conn:
        if await store.has_markets(conn):
            return []
    now = datetime.now(UTC)
    market_ids = []
    for market in DEMO_MARKETS:
        created = await markets.create(
            MarketCreate(
                title=market.title,
                category=market.category,
                description=market.description,
                closes_at=now + timedelta(weeks=market.weeks),
            )
        )
        async with connection(pool) as conn:
            await store.insert_demo_market(conn, created.id)
        market_ids.append(created.id)
    for phone, display_name in BOTS:
        user_id = await auth.sign_up(phone)
        try:
            await auth.set_display_name(user_id, display_name)
        except ApiError as exc:  # taken by someone: the bot trades unnamed
            logger.warning("demo bot {} keeps no display name: {}", user_id, exc.message)
        await wallet.deposits.create(user_id, BOT_DEPOSIT, SEED_DEPOSIT_KEY)
    logger.info("demo seeded: {} markets, {} bots", len(market_ids), len(BOTS))
    return market_ids


async def bot_ids(auth: AuthService) -> list[int]:
    """The bots' user ids (signing up any missing)."""
    return [await auth.sign_up(phone) for phone, _ in BOTS]
