"""Posting transfers: the one way money moves in Postgres.

`post_transfers` inserts a set of transfers and updates the balances they touch, all
inside the caller's transaction, so a posting is atomic with whatever business record
it belongs to (a deposit, a referral). The database refuses negative user cash or
escrow; that refusal surfaces as `InsufficientBalance`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import asyncpg

from probo.ledger.types import InsufficientBalance, Transfer
from probo.web import BIGINT_MAX

_INSERT_TRANSFERS = """
INSERT INTO transfers (debit_account_id, credit_account_id, amount, kind, ref_type, ref_id)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bigint[])
RETURNING id
"""
# Lock the touched accounts in id order first so concurrent postings cannot deadlock.
_LOCK_ACCOUNTS = "SELECT id FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"
_APPLY_DELTAS = """
UPDATE accounts AS a SET balance = a.balance + d.delta
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, delta)
WHERE a.id = d.id
"""


async def post_transfers(conn: asyncpg.Connection, transfers: Sequence[Transfer]) -> list[int]:
    """Insert `transfers` and apply them to balances; returns the new transfer ids in order.

    Must run inside a transaction. Raises InsufficientBalance (and the transaction is
    then unusable) if a user's cash or an escrow would go negative.
    """
    assert conn.is_in_transaction(), "post_transfers needs the caller's transaction"
    if not transfers:
        return []
    deltas: dict[int, int] = defaultdict(int)
    for transfer in transfers:
        assert transfer.amount > 0, transfer
        assert transfer.debit_account_id != transfer.credit_account_id, transfer
        deltas[transfer.debit_account_id] -= transfer.amount
        deltas[transfer.credit_account_id] += transfer.amount
    account_ids = sorted(deltas)
    try:
        locked = await conn.fetch(_LOCK_ACCOUNTS, account_ids)
        if len(locked) != len(account_ids):
            missing = set(account_ids) - {row["id"] for row in locked}
            raise AssertionError(f"transfers name unknown accounts {sorted(missing)}")
        rows = await conn.fetch(
            _INSERT_TRANSFERS,
            [t.debit_account_id for t in transfers],
            [t.credit_account_id for t in transfers],
            [t.amount for t in transfers],
            [t.kind for t in transfers],
            [t.ref_type for t in transfers],
            [t.ref_id for t in transfers],
        )
        await conn.execute(_APPLY_DELTAS, account_ids, [deltas[i] for i in account_ids])
    except asyncpg.CheckViolationError as exc:
        if exc.constraint_name == "accounts_balance_nonnegative":
            raise InsufficientBalance(str(exc)) from exc
        raise
    return [row["id"] for row in rows]


async def open_user_account(conn: asyncpg.Connection, user_id: int) -> int:
    """The user's cash account id, created if missing."""
    account_id = await conn.fetchval(
        "INSERT INTO accounts (kind, user_id) VALUES ('user_cash', $1) "
        "ON CONFLICT (user_id) DO NOTHING RETURNING id",
        user_id,
    )
    if account_id is None:
        account_id = await conn.fetchval("SELECT id FROM accounts WHERE user_id = $1", user_id)
    return account_id


async def user_account_id(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> int | None:
    return await conn.fetchval("SELECT id FROM accounts WHERE user_id = $1", user_id)


async def user_balance(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> int:
    balance = await conn.fetchval("SELECT balance FROM accounts WHERE user_id = $1", user_id)
    return balance or 0


async def user_transfers(
    conn: asyncpg.Connection | asyncpg.Pool, account_id: int, *, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    """Transfers in or out of `account_id`, newest first, ids below `before_id`."""
    return await conn.fetch(
        """
        SELECT id, kind, ref_type, ref_id, created_at,
               CASE WHEN credit_account_id = $1 THEN amount ELSE -amount END AS amount
        FROM (
            (SELECT * FROM transfers WHERE credit_account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3)
            UNION ALL
            (SELECT * FROM transfers WHERE debit_account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3)
        ) AS t
        ORDER BY id DESC
        LIMIT $3
        """,
        account_id,
        before_id if before_id is not None else BIGINT_MAX,
        limit,
    )
