"""SQL of the wallet: deposits, found by (user, idempotency key) and completed under a
row lock; what a user's open buys hold next to the balance; withdrawals as the ledger
writer committed them. Accounts and transfers themselves are the ledger's
(probo/ledger), and so is writing withdrawals."""

from __future__ import annotations

import asyncpg

from probo.wallet.types import Deposit, Withdrawal

_DEPOSIT_COLUMNS = (
    "id, user_id, amount, status, idempotency_key, gateway, gateway_reference, failure_reason, "
    "transfer_id, created_at, completed_at"
)


def _deposit(row: asyncpg.Record) -> Deposit:
    return Deposit(
        id=row["id"],
        amount=row["amount"],
        status=row["status"],
        idempotency_key=row["idempotency_key"],
        gateway=row["gateway"],
        gateway_reference=row["gateway_reference"],
        failure_reason=row["failure_reason"],
        transfer_id=row["transfer_id"],
        created_at=row["created_at"],
        completed_at=row["completed_at"],
    )


async def balance_and_locked(conn: asyncpg.Connection, user_id: int) -> tuple[int, int]:
    """(the user's ledger balance, what their open buys hold), as committed; 0 for none."""
    row = await conn.fetchrow(
        "SELECT coalesce((SELECT balance FROM accounts WHERE user_id = $1), 0) AS balance, "
        "coalesce((SELECT sum(price::bigint * (quantity - filled_quantity))::bigint FROM orders "
        "WHERE user_id = $1 AND status = 'open' AND side = 'buy'), 0) AS locked",
        user_id,
    )
    return row["balance"], row["locked"]


# --- deposits -----------------------------------------------------------------------------


async def insert_deposit_if_new(
    conn: asyncpg.Connection, user_id: int, idempotency_key: str, amount: int, gateway: str
) -> Deposit | None:
    """A new pending deposit; None if the user already has one under this key."""
    row = await conn.fetchrow(
        f"INSERT INTO deposits (user_id, idempotency_key, amount, gateway) VALUES ($1, $2, $3, $4) "
        f"ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING {_DEPOSIT_COLUMNS}",
        user_id,
        idempotency_key,
        amount,
        gateway,
    )
    return None if row is None else _deposit(row)


async def deposit_by_key(
    conn: asyncpg.Connection, user_id: int, idempotency_key: str
) -> Deposit | None:
    row = await conn.fetchrow(
        f"SELECT {_DEPOSIT_COLUMNS} FROM deposits WHERE user_id = $1 AND idempotency_key = $2",
        user_id,
        idempotency_key,
    )
    return None if row is None else _deposit(row)


async def lock_deposit(conn: asyncpg.Connection, deposit_id: int) -> Deposit:
    """The deposit, locked until the caller's transaction ends."""
    row = await conn.fetchrow(
        f"SELECT {_DEPOSIT_COLUMNS} FROM deposits WHERE id = $1 FOR UPDATE", deposit_id
    )
    return _deposit(row)


async def mark_deposit_failed(
    conn: asyncpg.Connection, deposit_id: int, gateway_reference: str, failure_reason: str
) -> Deposit:
    row = await conn.fetchrow(
        f"UPDATE deposits SET status = 'failed', gateway_reference = $2, failure_reason = $3, "
        f"completed_at = now() WHERE id = $1 RETURNING {_DEPOSIT_COLUMNS}",
        deposit_id,
        gateway_reference,
        failure_reason,
    )
    return _deposit(row)


async def mark_deposit_succeeded(
    conn: asyncpg.Connection, deposit_id: int, gateway_reference: str, transfer_id: int
) -> Deposit:
    row = await conn.fetchrow(
        f"UPDATE deposits SET status = 'succeeded', gateway_reference = $2, transfer_id = $3, "
        f"completed_at = now() WHERE id = $1 RETURNING {_DEPOSIT_COLUMNS}",
        deposit_id,
        gateway_reference,
        transfer_id,
    )
    return _deposit(row)


# --- withdrawals --------------------------------------------------------------------------


async def withdrawal_by_key(
    conn: asyncpg.Connection, user_id: int, idempotency_key: str
) -> Withdrawal | None:
    row = await conn.fetchrow(
        "SELECT id, amount, status, idempotency_key, created_at FROM withdrawals "
        "WHERE user_id = $1 AND idempotency_key = $2",
        user_id,
        idempotency_key,
    )
    return None if row is None else Withdrawal(**dict(row))
