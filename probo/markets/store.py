"""SQL of markets: the market rows (creation with the market's escrow account, the
recorded resolution, what the market clock looks for, the listing) and the market data
read from trades (the trade tape and candles)."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from probo.markets.types import Candle, MarketCreate, Outcome, Trade
from probo.web import BIGINT_MAX

_MARKET_SELECT = """
SELECT m.id, m.title, m.description, m.category, m.rules, m.status, m.outcome, m.tick,
       m.settlement_fee_bps, m.closes_at, m.created_at, m.resolved_at, m.last_price, m.volume
FROM markets m
"""
# Candles are aligned to whole intervals since the Unix epoch (UTC days for `1d`).
_CANDLES = """
SELECT date_bin($2::interval, created_at, 'epoch'::timestamptz) AS start,
       (array_agg(yes_price ORDER BY created_at, id))[1] AS open,
       max(yes_price) AS high,
       min(yes_price) AS low,
       (array_agg(yes_price ORDER BY created_at DESC, id DESC))[1] AS close,
       sum(quantity) AS volume
FROM trades
WHERE market_id = $1 AND created_at < $3 AND created_at >= $4
GROUP BY 1
ORDER BY 1 DESC
"""
_NEWEST_TRADE_BEFORE = """
SELECT created_at FROM trades WHERE market_id = $1 AND created_at < $2
ORDER BY created_at DESC LIMIT 1
"""


# --- market rows ---------------------------------------------------------------------------


async def insert_market(
    conn: asyncpg.Connection, request: MarketCreate, closes_at: datetime
) -> int:
    """The new market's id."""
    return await conn.fetchval(
        "INSERT INTO markets (title, description, category, rules, closes_at, tick, settlement_fee_bps) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        request.title,
        request.description,
        request.category,
        request.rules,
        closes_at,
        request.tick,
        request.settlement_fee_bps,
    )


async def insert_escrow_account(conn: asyncpg.Connection, market_id: int) -> None:
    await conn.execute(
        "INSERT INTO accounts (kind, market_id) VALUES ('market_escrow', $1)", market_id
    )


async def market_exists(conn: asyncpg.Connection, market_id: int) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM markets WHERE id = $1", market_id))


async def market_row(conn: asyncpg.Connection, market_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"{_MARKET_SELECT} WHERE m.id = $1", market_id)


async def market_rows(
    conn: asyncpg.Connection,
    *,
    status: str | None,
    category: str | None,
    before_id: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Markets newest first, ids below `before_id`, filtered by status and category."""
    return await conn.fetch(
        f"{_MARKET_SELECT} WHERE m.id < $1 AND ($2::text IS NULL OR m.status = $2) "
        "AND ($3::text IS NULL OR m.category = $3) ORDER BY m.id DESC LIMIT $4",
        before_id or BIGINT_MAX,
        status,
        category,
        limit,
    )


# --- resolution and the market clock -----------------------------------------------------


async def record_resolution(
    conn: asyncpg.Connection, market_id: int, outcome: Outcome
) -> asyncpg.Record | None:
    """Record `outcome` unless another is recorded: (resolving, settlement_fee_bps) as
    recorded now, or None if no unresolved market has this id."""
    return await conn.fetchrow(
        "UPDATE markets SET resolving = coalesce(resolving, $2) "
        "WHERE id = $1 AND status <> 'resolved' RETURNING resolving, settlement_fee_bps",
        market_id,
        outcome,
    )


async def clear_resolution(conn: asyncpg.Connection, market_id: int) -> None:
    """Forget the recorded resolution of a market that is not resolved."""
    await conn.execute(
        "UPDATE markets SET resolving = NULL WHERE id = $1 AND status <> 'resolved'",
        market_id,
    )


async def unfinished_resolutions(conn: asyncpg.Connection, count_max: int) -> list[asyncpg.Record]:
    """(id, resolving, settlement_fee_bps) of markets with a recorded resolution that has
    not committed, oldest id first."""
    return await conn.fetch(
        "SELECT id, resolving, settlement_fee_bps FROM markets "
        "WHERE resolving IS NOT NULL AND status <> 'resolved' ORDER BY id LIMIT $1",
        count_max,
    )


async def due_to_close(conn: asyncpg.Connection, count_max: int) -> list[int]:
    """Ids of open or paused markets whose `closes_at` has passed, the earliest first."""
    rows = await conn.fetch(
        "SELECT id FROM markets WHERE status IN ('open', 'paused') AND closes_at <= now() "
        "ORDER BY closes_at, id LIMIT $1",
        count_max,
    )
    return [row["id"] for row in rows]


# --- market data from trades ---------------------------------------------------------------


async def trades(
    conn: asyncpg.Connection, market_id: int, *, before_id: int | None, limit: int
) -> list[Trade]:
    """The market's trades newest first, ids below `before_id`."""
    rows = await conn.fetch(
        "SELECT id, yes_price, quantity, kind, taker_outcome, taker_side, created_at FROM trades "
        "WHERE market_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        market_id,
        before_id or BIGINT_MAX,
        limit,
    )
    return [
        Trade(
            id=r["id"],
            price=r["yes_price"],
            quantity=r["quantity"],
            kind=r["kind"],
            taker_outcome=r["taker_outcome"],
            taker_side=r["taker_side"],
            created_at=r["created_at"],
        )
        for r in rows
    ]


async def newest_trade_before(
    conn: asyncpg.Connection, market_id: int, before: datetime
) -> datetime | None:
    """When the market's newest trade before `before` happened, if it had one."""
    return await conn.fetchval(_NEWEST_TRADE_BEFORE, market_id, before)


async def candles(
    conn: asyncpg.Connection, market_id: int, step: timedelta, *, start: datetime, end: datetime
) -> list[Candle]:
    """OHLCV of the YES price per `step` over trades in [start, end), newest first."""
    rows = await conn.fetch(_CANDLES, market_id, step, end, start)
    return [
        Candle(
            start=r["start"],
            open=r["open"],
            high=r["high"],
            low=r["low"],
            close=r["close"],
            volume=r["volume"],
        )
        for r in rows
    ]
