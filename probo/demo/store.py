"""The demo's SQL: whether the database has any market, and which markets the demo seeded."""

from __future__ import annotations

import asyncpg


async def has_markets(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM markets)")


async def insert_demo_market(conn: asyncpg.Connection, market_id: int) -> None:
    await conn.execute(
        "INSERT INTO demo_markets (market_id) VALUES ($1) ON CONFLICT DO NOTHING", market_id
    )


async def open_demo_markets(conn: asyncpg.Connection, count_max: int) -> list[int]:
    rows = await conn.fetch(
        "SELECT d.market_id FROM demo_markets d JOIN markets m ON m.id = d.market_id "
        "WHERE m.status = 'open' ORDER BY d.market_id LIMIT $1",
        count_max,
    )
    return [r["market_id"] for r in rows]
