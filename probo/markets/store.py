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
       m.settlement_fee_bps, m.closes_at, m.created_at, m.resolved_at, m.last_price, m.volume,
       m.volume - coalesce(s.volume_aged, 0) AS volume_24h, s.price_24h_ago,
       coalesce(e.balance, 0) / 1000 AS open_interest
FROM markets m LEFT JOIN market_stats s ON s.market_id = m.id
LEFT JOIN accounts e ON e.market_id = m.id
"""
# Fresh at every commit: the writer moves `markets.volume` and the escrow in each batch;
# the refresher keeps only what ages (the volume that left the 24 h window, the price 24 h
# ago). The escrow holds 1000 per YES contract outstanding (SPEC §3 invariant 4).
# A search: the words of `q`, parsed like the markets' text, each as a prefix ("ind"
# finds "India"), all of them required. Each lexeme is quoted for to_tsquery (quotes
# and backslashes doubled), so no input is read as query syntax.
_SEARCH_QUERY = r"""(SELECT to_tsquery('simple'::regconfig, string_agg(
    '''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || ''':*', ' & '))
  FROM unnest(to_tsvector('simple'::regconfig, {q})))"""
# Per sort: the order, and the condition that continues after the previous page's last
# row (its key's parts as {k0}, {k1}).
_SORTS = {
    "new": ("m.id DESC", "m.id < {k0}"),
    "closing": ("m.closes_at, m.id", "(m.closes_at, m.id) > ({k0}::timestamptz, {k1}::bigint)"),
    "volume": (
        "m.volume - coalesce(s.volume_aged, 0) DESC, m.id DESC",
        "(m.volume - coalesce(s.volume_aged, 0), m.id) < ({k0}::bigint, {k1}::bigint)",
    ),
}
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
    q: str | None,
    sort: str,
    after: tuple[object, ...] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Markets in `sort` order after the key `after` (the previous page's last row),
    filtered by status, category and the words of `q`.

    The statement holds only the conditions asked for (fixed fragments; every value a
    parameter), so each combination gets a plan of its own that can use its index. A
    search first finds its page's ids through the search index (`page`, materialised),
    then reads those markets whole: the planner cannot see the words of `q` when it
    plans, and would otherwise walk the list in `sort` order testing each market (slow
    for a rare word), or read every match whole before keeping a page of them."""
    order, continues = _SORTS[sort]
    filters: list[str] = []
    arguments: list[object] = []

    def parameter(value: object) -> str:
        arguments.append(value)
        return f"${len(arguments)}"

    if status is not None:
        filters.append(f"m.status = {parameter(status)}")
    if category is not None:
        filters.append(f"m.category = {parameter(category)}")
    if q is not None:
        filters.append(f"m.search @@ {_SEARCH_QUERY.format(q=parameter(q))}")
        found = f"SELECT m.id, m.closes_at, m.volume FROM markets m WHERE {' AND '.join(filters)}"
        filters = []
    if after is not None:
        keys = {f"k{i}": parameter(value) for i, value in enumerate(after)}
        filters.append(continues.format(**keys))
    where = f"WHERE {' AND '.join(filters)} " if filters else ""
    if q is None:
        return await conn.fetch(
            f"{_MARKET_SELECT} {where}ORDER BY {order} LIMIT {parameter(limit)}", *arguments
        )
    stats = "LEFT JOIN market_stats s ON s.market_id = m.id " if sort == "volume" else ""
    return await conn.fetch(
        f"WITH found AS MATERIALIZED ({found}), "
        f"page AS MATERIALIZED (SELECT m.id FROM found m {stats}{where}"
        f"ORDER BY {order} LIMIT {parameter(limit)}) "
        f"{_MARKET_SELECT} WHERE m.id IN (SELECT id FROM page) ORDER BY {order}",
        *arguments,
    )


async def categories(conn: asyncpg.Connection, count_max: int) -> list[asyncpg.Record]:
    """(category, open_markets) of every named category with an open market, the most
    open markets first."""
    return await conn.fetch(
        "SELECT category, count(*) AS open_markets FROM markets "
        "WHERE status = 'open' AND category <> '' GROUP BY category "
        "ORDER BY open_markets DESC, category LIMIT $1",
        count_max,
    )


async def edit_market(
    conn: asyncpg.Connection,
    market_id: int,
    *,
    title: str | None,
    description: str | None,
    category: str | None,
    rules: str | None,
    closes_at: datetime | None,
) -> asyncpg.Record | None:
    """Change the given fields of an open or paused market, provided a new `closes_at`
    is later than its current one and than now; (tick, closes_at) as changed, or None if there is
    no such market."""
    return await conn.fetchrow(
        "UPDATE markets SET title = coalesce($2, title), description = coalesce($3, description), "
        "category = coalesce($4, category), rules = coalesce($5, rules), "
        "closes_at = coalesce($6, closes_at) "
        "WHERE id = $1 AND status IN ('open', 'paused') "
        "AND ($6::timestamptz IS NULL OR $6 > greatest(closes_at, now())) "
        "RETURNING tick, closes_at",
        market_id,
        title,
        description,
        category,
        rules,
        closes_at,
    )


async def market_state(conn: asyncpg.Connection, market_id: int) -> asyncpg.Record | None:
    """(status, closes_at) of a market."""
    return await conn.fetchrow("SELECT status, closes_at FROM markets WHERE id = $1", market_id)


async def insert_market_stats(conn: asyncpg.Connection, market_id: int) -> None:
    await conn.execute("INSERT INTO market_stats (market_id) VALUES ($1)", market_id)


# --- the watchlist ---------------------------------------------------------------------------

_WATCHED_SELECT = _MARKET_SELECT.replace(
    "SELECT m.id,", "SELECT w.created_at AS watched_at, m.id,", 1
).replace("FROM markets m", "FROM watchlist w JOIN markets m ON m.id = w.market_id", 1)


async def watch(conn: asyncpg.Connection, user_id: int, market_id: int) -> None:
    await conn.execute(
        "INSERT INTO watchlist (user_id, market_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        user_id,
        market_id,
    )


async def unwatch(conn: asyncpg.Connection, user_id: int, market_id: int) -> None:
    await conn.execute(
        "DELETE FROM watchlist WHERE user_id = $1 AND market_id = $2", user_id, market_id
    )


async def watched_rows(
    conn: asyncpg.Connection, user_id: int, *, after: tuple[datetime, int] | None, limit: int
) -> list[asyncpg.Record]:
    """The user's watched markets, the most recently watched first, after the key
    (watched_at, market id) of the previous page's last."""
    if after is None:
        return await conn.fetch(
            f"{_WATCHED_SELECT} WHERE w.user_id = $1 "
            "ORDER BY w.created_at DESC, w.market_id DESC LIMIT $2",
            user_id,
            limit,
        )
    return await conn.fetch(
        f"{_WATCHED_SELECT} WHERE w.user_id = $1 AND (w.created_at, w.market_id) < ($2, $3) "
        "ORDER BY w.created_at DESC, w.market_id DESC LIMIT $4",
        user_id,
        after[0],
        after[1],
        limit,
    )


# --- the 24 h figures --------------------------------------------------------------------------

# Each market's figures from the trades index (market_id, created_at) and the positions
# index (market_id), one market at a time: work grows with the markets refreshed and
# their trades of the last day, never with the whole table.
_REFRESH_STATS = """
INSERT INTO market_stats AS s (market_id, volume_aged, price_24h_ago, due_at, refreshed_at)
SELECT m.id,
       -- One snapshot: the writer commits a batch's trades and the market's volume together.
       m.volume - (SELECT coalesce(sum(t.quantity), 0) FROM trades t
                    WHERE t.market_id = m.id AND t.created_at > now() - interval '24 hours'),
       (SELECT t.yes_price FROM trades t
         WHERE t.market_id = m.id AND t.created_at <= now() - interval '24 hours'
         ORDER BY t.created_at DESC, t.id DESC LIMIT 1),
       (SELECT min(t.created_at) + interval '24 hours' FROM trades t
         WHERE t.market_id = m.id AND t.created_at > now() - interval '24 hours'),
       now()
FROM markets m WHERE m.id = ANY($1::bigint[])
ON CONFLICT (market_id) DO UPDATE SET
    volume_aged = excluded.volume_aged, price_24h_ago = excluded.price_24h_ago,
    due_at = excluded.due_at, refreshed_at = excluded.refreshed_at
"""


async def refresh_stats(conn: asyncpg.Connection, market_ids: list[int]) -> None:
    """Recompute the 24 h figures of these markets as of now."""
    await conn.execute(_REFRESH_STATS, market_ids)


async def stats_due(conn: asyncpg.Connection, count_max: int) -> list[int]:
    """Markets whose 24 h window has lost a trade since their last refresh, earliest first."""
    rows = await conn.fetch(
        "SELECT market_id FROM market_stats WHERE due_at <= now() ORDER BY due_at LIMIT $1",
        count_max,
    )
    return [row["market_id"] for row in rows]


async def market_ids_below(conn: asyncpg.Connection, before_id: int, count_max: int) -> list[int]:
    """Market ids below `before_id`, highest first (a sweep over every market)."""
    rows = await conn.fetch(
        "SELECT id FROM markets WHERE id < $1 ORDER BY id DESC LIMIT $2", before_id, count_max
    )
    return [row["id"] for row in rows]


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


async def trade_totals(conn: asyncpg.Connection) -> list[tuple[int, int | None, int]]:
    """(id, last price, volume) of every market, as committed."""
    rows = await conn.fetch("SELECT id, last_price, volume FROM markets")
    return [(row["id"], row["last_price"], row["volume"]) for row in rows]
