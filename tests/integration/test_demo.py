"""The first-run demo (probo/demo) against real Postgres and Redis, the real engine and
ledger writer: an empty database is seeded once with the demo markets and funded bots,
never twice; the liquidity bot keeps every demo book two-sided and trades, through the
trading service, leaving the ledger clean and the engine equal to Postgres; with the
demo off nothing is seeded."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from probo import demo
from probo.infra import Settings
from probo.ledger import audit_url
from tests.conftest import create_database, drop_database, make_settings
from tests.services import Services, ledger_problems, running_services

FAST_ROUND_INTERVAL_S = 0.05
WAIT_S_MAX = 15.0


@asynccontextmanager
async def fresh_settings(
    server_urls: tuple[str, str], tmp_path: Path, **overrides: object
) -> AsyncIterator[Settings]:
    """Settings on an empty database and a Redis prefix of their own, both removed after."""
    admin_url, redis_url = server_urls
    database_url = await create_database(admin_url)
    prefix = f"probo-demo-{uuid.uuid4().hex[:10]}:"
    try:
        yield make_settings(database_url, redis_url, prefix, tmp_path / "outbox.jsonl", **overrides)
    finally:
        await drop_database(admin_url, database_url)
        client = aioredis.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S_MAX
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {WAIT_S_MAX} s: {what}")


async def market_ids(pool: asyncpg.Pool) -> list[int]:
    return [r["id"] for r in await pool.fetch("SELECT id FROM markets ORDER BY id")]


async def bot_orders_since(pool: asyncpg.Pool, since: datetime) -> int:
    phones = [phone for phone, _ in demo.BOTS]
    return await pool.fetchval(
        "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id "
        "WHERE u.phone = ANY($1::text[]) AND o.created_at >= $2",
        phones,
        since,
    )


async def test_an_empty_database_is_seeded_once_and_a_restart_seeds_nothing(
    server_urls: tuple[str, str], tmp_path: Path
) -> None:
    async with fresh_settings(server_urls, tmp_path, demo=True) as settings:
        started_at = datetime.now(UTC)
        async with running_services(settings) as services:
            pool = services.pool
            await eventually(
                lambda: bot_orders_since(pool, started_at), "the bot quotes the seeded markets"
            )
            seeded = await market_ids(pool)
            users = await pool.fetch("SELECT id, phone, role FROM users ORDER BY id")
            titles = await pool.fetch(
                "SELECT title FROM markets m JOIN demo_markets d ON d.market_id = m.id"
            )
        assert len(seeded) == len(demo.DEMO_MARKETS)
        assert sorted(r["title"] for r in titles) == sorted(m.title for m in demo.DEMO_MARKETS)
        assert sorted(r["phone"] for r in users) == sorted(phone for phone, _ in demo.BOTS)
        assert {r["role"] for r in users} == {"user"}

        restarted_at = datetime.now(UTC)
        async with running_services(settings) as services:
            pool = services.pool
            # The bot is past seeding once it has replaced the previous run's quotes.
            await eventually(
                lambda: bot_orders_since(pool, restarted_at), "the bot quotes after a restart"
            )
            assert await market_ids(pool) == seeded
            assert await pool.fetch("SELECT id, phone, role FROM users ORDER BY id") == users
            seed_deposits = await pool.fetchval(
                "SELECT count(*) FROM deposits WHERE idempotency_key = 'demo-seed'"
            )
            assert seed_deposits == len(demo.BOTS)
        assert await audit_url(settings.database_url or "") == []


async def test_the_bot_keeps_every_demo_book_two_sided_and_trades(
    server_urls: tuple[str, str], tmp_path: Path
) -> None:
    async with fresh_settings(server_urls, tmp_path) as settings:
        async with running_services(settings) as services:
            seeded = await seed(services)
            assert len(seeded) == len(demo.DEMO_MARKETS)
            assert await seed(services) == []  # markets exist: nothing more
            bot = demo.LiquidityBot(
                pool=services.pool,
                auth=services.auth,
                markets=services.markets,
                trading=services.trading,
                wallet=services.wallet,
                round_interval_s=FAST_ROUND_INTERVAL_S,
                rng=random.Random(16),
            )
            running = asyncio.create_task(bot.run())

            async def books_two_sided_and_traded() -> bool:
                for market_id in seeded:
                    book = await services.markets.order_book(market_id, None)
                    if not (book.yes and book.no):
                        return False
                return await services.pool.fetchval("SELECT count(*) FROM trades") > 0

            try:
                await eventually(books_two_sided_and_traded, "two-sided books and a trade")
            finally:
                running.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await running
            assert await ledger_problems(services) == []
            for market_id in seeded:
                book = await services.markets.order_book(market_id, None)
                best_bid, best_ask = book.yes[0].price, 1000 - book.no[0].price
                assert best_bid < best_ask  # the makers never cross each other
            holdings = await services.pool.fetch("SELECT yes_quantity, no_quantity FROM positions")
            assert all(
                r["yes_quantity"] <= 2 * demo.HOLDING_MAX
                and r["no_quantity"] <= 2 * demo.HOLDING_MAX
                for r in holdings
            )


async def test_with_the_demo_off_nothing_is_seeded(
    server_urls: tuple[str, str], tmp_path: Path
) -> None:
    async with fresh_settings(server_urls, tmp_path) as settings:
        assert settings.demo is False  # the tests' default
        async with running_services(settings) as services:
            await asyncio.sleep(0.5)
            assert await market_ids(services.pool) == []
            assert await services.pool.fetchval("SELECT count(*) FROM users") == 0


async def seed(services: Services) -> list[int]:
    return await demo.seed(
        pool=services.pool, auth=services.auth, markets=services.markets, wallet=services.wallet
    )
