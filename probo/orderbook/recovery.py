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

from probo.orderbook import store
from probo.orderbook.client_ids import CLIENT_ORDER_IDS_RECENT_MAX
from probo.orderbook.exchange import Exchange
from probo.orderbook.keys import WITHDRAWAL_KEYS_RECENT_MAX


class Recovered(msgspec.Struct):
    exchange: Exchange
    # ((user id, key), (withdrawal id, amount)) of the most recent, oldest first
    withdrawals: list[tuple[tuple[int, str], tuple[int, int]]]
    last_withdrawal_id: int
    closes_at: dict[int, float]  # open and paused markets' closing times (epoch seconds)
    users: int
    open_orders: int
    seconds: float
    # Credits whose outbox rows this snapshot cleared: the balances read include them.
    included_transfer_ids: list[int] = []


async def recover(
    pool: asyncpg.Pool,
    *,
    client_order_ids_recent_max: int = CLIENT_ORDER_IDS_RECENT_MAX,
    withdrawal_keys_recent_max: int = WITHDRAWAL_KEYS_RECENT_MAX,
) -> Recovered:
    """The engine's state as one snapshot of Postgres holds it: users' cash, markets,
    positions, open orders, and the client order ids and withdrawal keys of open orders
    and of the most recent (what is older is Postgres's to remember)."""
    started = time.perf_counter()
    exchange = Exchange(client_order_ids_recent_max)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        users = await store.user_ids(conn)
        for user_id in users:
            exchange.create_user(user_id)
        for row in await store.cash_balances(conn):
            exchange.credit(row[0], row[1])
        markets = await store.markets_with_escrow(conn)
        for row in markets:
            exchange.restore_market(row["id"], row["tick"], row["status"], row["escrow"])
        for row in await store.held_positions(conn):
            exchange.restore_position(row[0], row[1], row[2], row[3])
        open_orders = 0
        async for row in store.open_orders(conn):
            exchange.restore_order(row[0], row[1], row[2], row[3], row[4], row[5], row[6])
            if row[7] is not None:
                exchange.restore_client_order_id(row[1], row[7], row[0], row[2])
            open_orders += 1
        recent_max = exchange.client_order_ids.recent_max
        for row in await store.recent_closed_client_order_ids(conn, recent_max):
            exchange.restore_client_order_id(row[0], row[1], row[2], row[3])
        ids = await store.last_ids(conn)
        exchange.restore_ids(ids["orders"], ids["trades"])
        withdrawals = [
            ((r[0], r[1]), (r[2], r[3]))
            for r in await store.recent_withdrawal_keys(conn, withdrawal_keys_recent_max)
        ]
        # Under repeatable read this deletes only rows this snapshot can see: the
        # credits already inside the balances just read.
        included = await store.clear_credit_outbox(conn)
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
        closes_at={
            row["id"]: row["closes_at"].timestamp()
            for row in markets
            if row["status"] in ("open", "paused")
        },
        users=len(users),
        open_orders=open_orders,
        seconds=seconds,
        included_transfer_ids=included,
    )
