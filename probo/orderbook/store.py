"""The engine's SQL: the snapshot recovery reads, and the outbox of credits to mirror.

Recovery reads everything inside one repeatable-read transaction (the caller's), so
these functions take a connection and never open transactions of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg

ORDER_FETCH_BATCH = 50_000  # rows read per round trip by the cursors below


async def user_ids(conn: asyncpg.Connection) -> list[int]:
    return [row[0] for row in await conn.fetch("SELECT id FROM users")]


async def cash_balances(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """(user_id, balance) of every user with cash."""
    return await conn.fetch(
        "SELECT user_id, balance FROM accounts WHERE kind = 'user_cash' AND balance > 0"
    )


async def markets_with_escrow(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """(id, tick, status, escrow, closes_at) of every market, in id order."""
    return await conn.fetch(
        "SELECT m.id, m.tick, m.status, coalesce(a.balance, 0) AS escrow, m.closes_at "
        "FROM markets m LEFT JOIN accounts a ON a.market_id = m.id ORDER BY m.id"
    )


async def held_positions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """(user_id, market_id, yes_quantity, no_quantity) where anything is held."""
    return await conn.fetch(
        "SELECT user_id, market_id, yes_quantity, no_quantity FROM positions "
        "WHERE yes_quantity > 0 OR no_quantity > 0"
    )


def open_orders(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Record]:
    """(id, user_id, market_id, outcome, side, price, remaining, client_order_id) in id
    order: each level's time priority."""
    return conn.cursor(
        "SELECT id, user_id, market_id, outcome, side, price, quantity - filled_quantity, "
        "client_order_id FROM orders WHERE status = 'open' ORDER BY id",
        prefetch=ORDER_FETCH_BATCH,
    )


async def recent_closed_client_order_ids(
    conn: asyncpg.Connection, count_max: int
) -> list[asyncpg.Record]:
    """(user_id, client_order_id, id, market_id) of the `count_max` newest orders placed
    with one and no longer open, oldest first."""
    rows = await conn.fetch(
        "SELECT user_id, client_order_id, id, market_id FROM orders "
        "WHERE client_order_id IS NOT NULL AND status <> 'open' ORDER BY id DESC LIMIT $1",
        count_max,
    )
    rows.reverse()
    return rows


async def last_ids(conn: asyncpg.Connection) -> asyncpg.Record:
    """The highest order, trade and withdrawal ids."""
    row = await conn.fetchrow(
        "SELECT (SELECT coalesce(max(id), 0) FROM orders) AS orders, "
        "(SELECT coalesce(max(id), 0) FROM trades) AS trades, "
        "(SELECT coalesce(max(id), 0) FROM withdrawals) AS withdrawals"
    )
    assert row is not None
    return row


async def recent_withdrawal_keys(conn: asyncpg.Connection, count_max: int) -> list[asyncpg.Record]:
    """(user_id, idempotency_key, id, amount) of the `count_max` newest withdrawals,
    oldest first."""
    return await conn.fetch(
        "SELECT * FROM (SELECT user_id, idempotency_key, id, amount FROM withdrawals "
        "               ORDER BY id DESC LIMIT $1) AS recent ORDER BY id",
        count_max,
    )


# --- the credit outbox -------------------------------------------------------------------


async def insert_credit_outbox(
    conn: asyncpg.Connection, command: str, transfer_id: int, user_id: int, amount: int
) -> None:
    await conn.execute(
        "INSERT INTO engine_credit_outbox (transfer_id, command, user_id, amount) "
        "VALUES ($1, $2, $3, $4)",
        transfer_id,
        command,
        user_id,
        amount,
    )


async def delete_credit_outbox(conn: asyncpg.Connection, transfer_ids: list[int]) -> None:
    await conn.execute(
        "DELETE FROM engine_credit_outbox WHERE transfer_id = ANY($1::bigint[])", transfer_ids
    )


async def clear_credit_outbox(conn: asyncpg.Connection) -> list[int]:
    """Delete every outbox row this transaction can see; their transfer ids."""
    rows = await conn.fetch("DELETE FROM engine_credit_outbox RETURNING transfer_id")
    return [row[0] for row in rows]


async def lock_stale_credits(
    conn: asyncpg.Connection, older_than_s: float, count_max: int
) -> list[asyncpg.Record]:
    """Outbox rows older than `older_than_s`, locked until the transaction ends (rows
    another transaction holds are skipped)."""
    return await conn.fetch(
        "SELECT transfer_id, command, user_id, amount FROM engine_credit_outbox "
        "WHERE created_at < now() - make_interval(secs => $1) ORDER BY transfer_id LIMIT $2 "
        "FOR UPDATE SKIP LOCKED",
        older_than_s,
        count_max,
    )
