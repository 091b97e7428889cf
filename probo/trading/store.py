"""SQL of trading: committed trading state read from Postgres (orders with their
fills, a user's fills, positions). Everything here was acknowledged only after it
committed, so these reads see exactly what users were told. Orders and trades are
written by the ledger writer (probo/ledger), never here."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import asyncpg

from probo.orderbook import own_price
from probo.trading.types import Fill, Order, UserFill, average
from probo.web import BIGINT_MAX

_ORDER_COLUMNS = (
    "id, client_order_id, market_id, outcome, side, type, time_in_force, price, quantity, status, "
    "filled_quantity, cost, cancel_reason, created_at"
)


async def _fills_of(conn: asyncpg.Connection, order_ids: list[int]) -> dict[int, list[Fill]]:
    fills: dict[int, list[Fill]] = defaultdict(list)
    if not order_ids:
        return fills
    rows = await conn.fetch(
        """
        SELECT taker_order_id AS order_id, taker_outcome AS outcome, id, yes_price, quantity, kind, created_at
        FROM trades WHERE taker_order_id = ANY($1::bigint[])
        UNION ALL
        SELECT maker_order_id, maker_outcome, id, yes_price, quantity, kind, created_at
        FROM trades WHERE maker_order_id = ANY($1::bigint[])
        ORDER BY id
        """,
        order_ids,
    )
    for r in rows:
        fills[r["order_id"]].append(
            Fill(
                trade_id=r["id"],
                price=own_price(r["outcome"], r["yes_price"]),
                quantity=r["quantity"],
                kind=r["kind"],
                created_at=r["created_at"],
            )
        )
    return fills


def _order(row: asyncpg.Record, fills: list[Fill]) -> Order:
    status = row["status"]
    return Order(
        id=row["id"],
        client_order_id=row["client_order_id"],
        market_id=row["market_id"],
        outcome=row["outcome"],
        side=row["side"],
        type=row["type"],
        time_in_force=row["time_in_force"],
        price=row["price"],
        quantity=row["quantity"],
        status=status,
        filled_quantity=row["filled_quantity"],
        remaining_quantity=row["quantity"] - row["filled_quantity"] if status == "open" else 0,
        average_price=average(row["cost"], row["filled_quantity"]),
        fills=fills,
        created_at=row["created_at"],
        cancel_reason=row["cancel_reason"],
    )


async def orders_by_ids(
    conn: asyncpg.Connection, user_id: int, order_ids: list[int]
) -> list[Order]:
    rows = await conn.fetch(
        f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = ANY($1::bigint[]) AND user_id = $2 ORDER BY id",
        order_ids,
        user_id,
    )
    fills = await _fills_of(conn, [r["id"] for r in rows])
    return [_order(r, fills.get(r["id"], [])) for r in rows]


async def orders_of_anyone(
    conn: asyncpg.Connection, order_ids: list[int]
) -> list[tuple[int, Order]]:
    """(owner, order) for each id, whoever owns it: for feeds that route by owner."""
    rows = await conn.fetch(
        f"SELECT user_id, {_ORDER_COLUMNS} FROM orders WHERE id = ANY($1::bigint[]) ORDER BY id",
        order_ids,
    )
    fills = await _fills_of(conn, [r["id"] for r in rows])
    return [(r["user_id"], _order(r, fills.get(r["id"], []))) for r in rows]


async def order_by_client_id(
    conn: asyncpg.Connection, user_id: int, client_order_id: str
) -> Order | None:
    row = await conn.fetchrow(
        f"SELECT {_ORDER_COLUMNS} FROM orders WHERE user_id = $1 AND client_order_id = $2",
        user_id,
        client_order_id,
    )
    if row is None:
        return None
    fills = await _fills_of(conn, [row["id"]])
    return _order(row, fills.get(row["id"], []))


async def list_orders(
    conn: asyncpg.Connection,
    user_id: int,
    *,
    status: str | None,
    market_id: int | None,
    client_order_id: str | None,
    before_id: int | None,
    limit: int,
) -> list[Order]:
    rows = await conn.fetch(
        f"""
        SELECT {_ORDER_COLUMNS} FROM orders
        WHERE user_id = $1 AND id < $2
          AND ($3::text IS NULL OR status = $3) AND ($4::bigint IS NULL OR market_id = $4)
          AND ($6::text IS NULL OR client_order_id = $6)
        ORDER BY id DESC LIMIT $5
        """,
        user_id,
        before_id or BIGINT_MAX,
        status,
        market_id,
        limit,
        client_order_id,
    )
    fills = await _fills_of(conn, [r["id"] for r in rows])
    return [_order(r, fills.get(r["id"], [])) for r in rows]


async def list_fills(
    conn: asyncpg.Connection,
    user_id: int,
    *,
    market_id: int | None,
    before_id: int | None,
    limit: int,
) -> list[UserFill]:
    rows = await conn.fetch(
        """
        SELECT * FROM (
            (SELECT id, market_id, yes_price, quantity, kind, created_at, 'taker' AS role,
                    taker_order_id AS order_id, taker_outcome AS outcome, taker_side AS side
             FROM trades WHERE taker_user_id = $1 AND id < $2 AND ($3::bigint IS NULL OR market_id = $3)
             ORDER BY id DESC LIMIT $4)
            UNION ALL
            (SELECT id, market_id, yes_price, quantity, kind, created_at, 'maker',
                    maker_order_id, maker_outcome, maker_side
             FROM trades WHERE maker_user_id = $1 AND id < $2 AND ($3::bigint IS NULL OR market_id = $3)
             ORDER BY id DESC LIMIT $4)
        ) AS f ORDER BY id DESC LIMIT $4
        """,
        user_id,
        before_id or BIGINT_MAX,
        market_id,
        limit,
    )
    return [
        UserFill(
            order_id=r["order_id"],
            trade_id=r["id"],
            market_id=r["market_id"],
            outcome=r["outcome"],
            side=r["side"],
            price=own_price(r["outcome"], r["yes_price"]),
            quantity=r["quantity"],
            kind=r["kind"],
            role=r["role"],
            created_at=r["created_at"],
        )
        for r in rows
    ]


async def order_owner(conn: asyncpg.Connection, order_id: int) -> int | None:
    return await conn.fetchval("SELECT user_id FROM orders WHERE id = $1", order_id)


_POSITION_COLUMNS = """
    m.id AS market_id, m.title, m.status, m.last_price,
    coalesce(p.yes_quantity, 0) AS yes_quantity, coalesce(p.no_quantity, 0) AS no_quantity,
    coalesce(p.yes_cost, 0) AS yes_cost, coalesce(p.no_cost, 0) AS no_cost,
    coalesce(p.realized_pnl, 0) AS realized_pnl, coalesce(p.payout, 0) AS payout,
    coalesce(l.yes_locked, 0) AS yes_locked, coalesce(l.no_locked, 0) AS no_locked
"""
_SELL_LOCKS = """
    SELECT market_id,
           sum(quantity - filled_quantity) FILTER (WHERE outcome = 'yes') AS yes_locked,
           sum(quantity - filled_quantity) FILTER (WHERE outcome = 'no') AS no_locked
    FROM orders WHERE user_id = $1 AND status = 'open' AND side = 'sell'
"""


async def positions(conn: asyncpg.Connection, user_id: int) -> list[asyncpg.Record]:
    """Held contracts per market with cost, P&L and what open sells lock."""
    return await conn.fetch(
        f"""
        SELECT {_POSITION_COLUMNS}
        FROM positions p
        JOIN markets m ON m.id = p.market_id
        LEFT JOIN ({_SELL_LOCKS} GROUP BY market_id) l ON l.market_id = p.market_id
        WHERE p.user_id = $1
        ORDER BY p.market_id
        """,
        user_id,
    )


async def position(conn: asyncpg.Connection, user_id: int, market_id: int) -> asyncpg.Record | None:
    """The user's position in one market, zeros when they hold none; None for no market."""
    return await conn.fetchrow(
        f"""
        SELECT {_POSITION_COLUMNS}
        FROM markets m
        LEFT JOIN positions p ON p.market_id = m.id AND p.user_id = $1
        LEFT JOIN ({_SELL_LOCKS} AND market_id = $2 GROUP BY market_id) l ON l.market_id = m.id
        WHERE m.id = $2
        """,
        user_id,
        market_id,
    )


# --- the leaderboard -------------------------------------------------------------------


async def leaderboard(
    conn: asyncpg.Connection, since: datetime | None, *, offset: int, limit: int
) -> list[asyncpg.Record]:
    """Users by realised P&L since `since` (None: ever), best first, with the contracts
    they traded in that time; rows `offset` to `offset + limit`."""
    return await conn.fetch(
        """
        WITH ranked AS (
            SELECT user_id, sum(amount)::bigint AS realized_pnl
            FROM realized_pnl WHERE $1::timestamptz IS NULL OR at >= $1
            GROUP BY user_id
            ORDER BY realized_pnl DESC, user_id
            OFFSET $2 LIMIT $3
        )
        SELECT r.user_id, r.realized_pnl, u.display_name,
               coalesce((SELECT sum(quantity) FROM trades t
                         WHERE t.taker_user_id = r.user_id
                           AND ($1::timestamptz IS NULL OR t.created_at >= $1)), 0)
             + coalesce((SELECT sum(quantity) FROM trades t
                         WHERE t.maker_user_id = r.user_id
                           AND ($1::timestamptz IS NULL OR t.created_at >= $1)), 0) AS volume
        FROM ranked r JOIN users u ON u.id = r.user_id
        ORDER BY r.realized_pnl DESC, r.user_id
        """,
        since,
        offset,
        limit,
    )
