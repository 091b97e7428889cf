"""Start-up recovery: the engine's whole state rebuilt from one Postgres snapshot.

Read under repeatable read, so balances, escrows, positions and open orders are all
as of one instant: users and their cash, markets with their escrow and status,
contracts held, open orders put back on their books in order id order (which is each
level's time priority) with their locks, the client order ids and withdrawal keys
already used, and the id sequences. In the same snapshot the credit outbox rows that
the balances already include are cleared; rows committed later stay for the mirror's
reconciler.
"""

from __future__ import annotations

import time

import asyncpg
import msgspec
from loguru import logger

from probo.orderbook.exchange import Exchange

ORDER_FETCH_BATCH = 50_000  # open orders read per round trip


class Recovered(msgspec.Struct):
    exchange: Exchange
    withdrawals: dict[tuple[int, str], tuple[int, int]]
    last_withdrawal_id: int
    users: int
    open_orders: int
    seconds: float
    # Credits whose outbox rows this snapshot cleared: the balances read include them.
    included_transfer_ids: list[int] = []


async def recover(pool: asyncpg.Pool) -> Recovered:
    started = time.perf_counter()
    exchange = Exchange()
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        users = await conn.fetch("SELECT id FROM users")
        for row in users:
            exchange.create_user(row[0])
        for row in await conn.fetch(
            "SELECT user_id, balance FROM accounts WHERE kind = 'user_cash' AND balance > 0"
        ):
            exchange.credit(row[0], row[1])
        markets = await conn.fetch(
            "SELECT m.id, m.tick, m.status, coalesce(a.balance, 0) AS escrow "
            "FROM markets m LEFT JOIN accounts a ON a.market_id = m.id ORDER BY m.id"
        )
        for row in markets:
            exchange.restore_market(row["id"], row["tick"], row["status"], row["escrow"])
        for row in await conn.fetch(
            "SELECT user_id, market_id, yes_quantity, no_quantity FROM positions "
            "WHERE yes_quantity > 0 OR no_quantity > 0"
        ):
            exchange.restore_position(row[0], row[1], row[2], row[3])
        open_orders = 0
        async for row in conn.cursor(
            "SELECT id, user_id, market_id, outcome, side, price, quantity - filled_quantity "
            "FROM orders WHERE status = 'open' ORDER BY id",
            prefetch=ORDER_FETCH_BATCH,
        ):
            exchange.restore_order(row[0], row[1], row[2], row[3], row[4], row[5], row[6])
            open_orders += 1
        async for row in conn.cursor(
            "SELECT user_id, client_order_id, id FROM orders WHERE client_order_id IS NOT NULL",
            prefetch=ORDER_FETCH_BATCH,
        ):
            exchange.restore_client_order_id(row[0], row[1], row[2])
        ids = await conn.fetchrow(
            "SELECT (SELECT coalesce(max(id), 0) FROM orders) AS orders, "
            "(SELECT coalesce(max(id), 0) FROM trades) AS trades, "
            "(SELECT coalesce(max(id), 0) FROM withdrawals) AS withdrawals"
        )
        exchange.restore_ids(ids["orders"], ids["trades"])
        withdrawals = {
            (row[0], row[1]): (row[2], row[3])
            for row in await conn.fetch(
                "SELECT user_id, idempotency_key, id, amount FROM withdrawals"
            )
        }
        # Under repeatable read this deletes only rows this snapshot can see: the
        # credits already inside the balances just read.
        included = [
            row[0]
            for row in await conn.fetch("DELETE FROM engine_credit_outbox RETURNING transfer_id")
        ]
    seconds = time.perf_counter() - started
    logger.info(
        "engine recovered {} users, {} markets, {} open orders in {:.2f} s ({} outbox credits included)",
        len(users),
        len(markets),
        open_orders,
        seconds,
        len(included),
    )
    return Recovered(
        exchange=exchange,
        withdrawals=withdrawals,
        last_withdrawal_id=ids["withdrawals"],
        users=len(users),
        open_orders=open_orders,
        seconds=seconds,
        included_transfer_ids=included,
    )
