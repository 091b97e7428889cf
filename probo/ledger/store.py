"""The ledger's SQL: posting transfers, and writing the engine's batches.

`post_transfers` inserts a set of transfers and updates the balances they touch, all
inside the caller's transaction, so a posting is atomic with whatever business record
it belongs to (a deposit, a referral). The database refuses negative user cash or
escrow; that refusal surfaces as `InsufficientBalance`.

The ledger writer (writer.py) commits a batch of engine decisions with
`write_batch_by_call` (small batches: one call of `probo_write_batch`, one round trip,
its own transaction) or `write_batch_by_copy` (large ones: COPY and set-based
statements, in the caller's transaction), and reads what its translation needs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import asyncpg

from probo.ledger.batch import BatchRows
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


# --- the writer's batches -----------------------------------------------------------------

# One call, one round trip, its own transaction (schema.sql has the function).
_WRITE_BATCH = """
SELECT probo_write_batch(
    $1::bigint,
    $2::orders[],
    $3::bigint[], $4::int[], $5::bigint[], $6::text[], $7::text[], $8::timestamptz[],
    $9::trades[],
    $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[], $15::bigint[], $16::timestamptz[],
    $17::bigint[], $18::bigint[],
    $19::positions[],
    $20::withdrawals[],
    $21::bigint[], $22::text[], $23::text[], $24::bigint[], $25::int[],
    $26::bigint[],
    $27::bigint[], $28::bigint[], $29::bigint[]
)
"""
_SET_HEAD = "UPDATE ledger_head SET last_batch_id = $1 WHERE only_row"
_HEAD = "SELECT last_batch_id FROM ledger_head"


# Large batches go by COPY: a few more round trips, much cheaper rows.
_ORDER_COLUMNS = (
    "id", "user_id", "market_id", "outcome", "side", "type", "time_in_force", "price", "quantity",
    "filled_quantity", "cost", "status", "cancel_reason", "client_order_id", "created_at", "updated_at",
)  # fmt: skip
_TRADE_COLUMNS = (
    "id", "market_id", "kind", "yes_price", "quantity", "taker_order_id", "taker_user_id", "taker_outcome",
    "taker_side", "maker_order_id", "maker_user_id", "maker_outcome", "maker_side", "created_at",
)  # fmt: skip
_TRANSFER_COLUMNS = (
    "debit_account_id",
    "credit_account_id",
    "amount",
    "kind",
    "ref_type",
    "ref_id",
    "created_at",
)
_WITHDRAWAL_COLUMNS = (
    "id", "user_id", "idempotency_key", "amount", "status", "created_at", "fee", "completed_at",
    "reason", "decided_by", "decided_at", "provider", "provider_reference", "payout_requested_at",
    "reconciled_at",
)  # fmt: skip

_UPDATE_ORDERS = """
UPDATE orders AS o SET
    filled_quantity = o.filled_quantity + d.filled,
    cost = o.cost + d.cost,
    status = coalesce(d.status, o.status),
    cancel_reason = coalesce(d.reason, o.cancel_reason),
    updated_at = d.at
FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[])
    AS d(id, filled, cost, status, reason, at)
WHERE o.id = d.id
"""
_UPSERT_POSITIONS = """
INSERT INTO positions (user_id, market_id, yes_quantity, no_quantity, yes_cost, no_cost, realized_pnl, payout)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                     $7::bigint[], $8::bigint[])
ON CONFLICT (user_id, market_id) DO UPDATE SET
    yes_quantity = excluded.yes_quantity, no_quantity = excluded.no_quantity,
    yes_cost = excluded.yes_cost, no_cost = excluded.no_cost, realized_pnl = excluded.realized_pnl,
    payout = excluded.payout
"""
_UPDATE_MARKETS = """
UPDATE markets AS m SET
    status = coalesce(d.status, m.status),
    outcome = coalesce(d.outcome, m.outcome),
    resolved_at = CASE WHEN d.outcome IS NULL THEN m.resolved_at ELSE now() END,
    volume = m.volume + d.volume,
    last_price = coalesce(d.last_price, m.last_price)
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::int[])
    AS d(id, status, outcome, volume, last_price)
WHERE m.id = d.id
"""
_NOT_NEW = "UPDATE users SET is_new = false WHERE id = ANY($1::bigint[]) AND is_new"
# Every row a batch updates is found by its key: a plan that scans a table whole (cheaper
# on paper for a few thousand keys) costs a pass over every order ever placed.
_BY_KEY_ONLY = (
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; "
    "SET LOCAL enable_mergejoin = off"
)


async def last_batch_id(conn: asyncpg.Connection) -> int:
    """The number of the last batch the writer committed."""
    return await conn.fetchval(_HEAD)  # type: ignore[no-any-return]


async def user_and_market_accounts(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """(id, user_id, market_id) of every user's cash and market's escrow account."""
    return await conn.fetch(
        "SELECT id, user_id, market_id FROM accounts "
        "WHERE user_id IS NOT NULL OR market_id IS NOT NULL"
    )


async def cash_account_ids(conn: asyncpg.Connection, user_ids: set[int]) -> dict[int, int]:
    """User id -> cash account id, for these users."""
    rows = await conn.fetch(
        "SELECT id, user_id FROM accounts WHERE user_id = ANY($1::bigint[])", list(user_ids)
    )
    return {row["user_id"]: row["id"] for row in rows}


async def escrow_account_ids(conn: asyncpg.Connection, market_ids: set[int]) -> dict[int, int]:
    """Market id -> escrow account id, for these markets."""
    rows = await conn.fetch(
        "SELECT id, market_id FROM accounts WHERE market_id = ANY($1::bigint[])",
        list(market_ids),
    )
    return {row["market_id"]: row["id"] for row in rows}


async def position_costs(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """(user_id, market_id, yes, no, yes_cost, no_cost, realized_pnl, payout) of every
    position."""
    return await conn.fetch(
        "SELECT user_id, market_id, yes_quantity, no_quantity, yes_cost, no_cost, realized_pnl, "
        "payout FROM positions"
    )


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to one list per column (`width` columns, also when there are no rows)."""
    return (
        [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
    )


def _market_columns(rows: BatchRows) -> tuple[list[Any], ...]:
    ids = sorted(rows.markets)
    changes = [rows.markets[i] for i in ids]
    return (
        ids,
        [c.status for c in changes],
        [c.outcome for c in changes],
        [c.volume for c in changes],
        [c.last_price for c in changes],
    )


async def write_batch_by_call(conn: asyncpg.Connection, rows: BatchRows) -> None:
    """Small batches: one call of `probo_write_batch`, one round trip."""
    account_ids = sorted(rows.account_deltas)
    position_keys = list(rows.positions)
    positions = [
        (user_id, market_id, p.yes, p.no, p.yes_cost, p.no_cost, p.realized, p.payout)
        for (user_id, market_id), p in ((k, rows.positions[k]) for k in position_keys)
    ]
    await conn.execute(
        _WRITE_BATCH,
        rows.batch_id,
        [tuple(order) for order in rows.new_orders],
        *_columns(rows.order_updates, 6),
        rows.trades,
        *_columns(rows.transfers, 7),
        account_ids,
        [rows.account_deltas[i] for i in account_ids],
        positions,
        rows.withdrawals,
        *_market_columns(rows),
        sorted(rows.not_new),
        *_columns(rows.realized, 3),
    )


async def write_batch_by_copy(conn: asyncpg.Connection, rows: BatchRows) -> None:
    """Large batches: COPY and set-based statements, one transaction (the caller's)."""
    await conn.execute(_BY_KEY_ONLY)
    await conn.execute(_SET_HEAD, rows.batch_id)
    # Users before accounts: the same lock order as a referral, which locks both.
    if rows.not_new:
        await conn.execute(_NOT_NEW, sorted(rows.not_new))
    if rows.new_orders:
        await conn.copy_records_to_table("orders", records=rows.new_orders, columns=_ORDER_COLUMNS)
    if rows.order_updates:
        await conn.execute(_UPDATE_ORDERS, *zip(*rows.order_updates, strict=True))
    if rows.trades:
        await conn.copy_records_to_table("trades", records=rows.trades, columns=_TRADE_COLUMNS)
    if rows.transfers:
        await conn.copy_records_to_table(
            "transfers", records=rows.transfers, columns=_TRANSFER_COLUMNS
        )
    if rows.account_deltas:
        account_ids = sorted(rows.account_deltas)
        # In id order, like every other posting, so concurrent postings cannot deadlock.
        await conn.execute(_LOCK_ACCOUNTS, account_ids)
        await conn.execute(
            _APPLY_DELTAS, account_ids, [rows.account_deltas[i] for i in account_ids]
        )
    if rows.positions:
        keys = list(rows.positions)
        values = [rows.positions[k] for k in keys]
        await conn.execute(
            _UPSERT_POSITIONS,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [v.yes for v in values],
            [v.no for v in values],
            [v.yes_cost for v in values],
            [v.no_cost for v in values],
            [v.realized for v in values],
            [v.payout for v in values],
        )
    if rows.withdrawals:
        await conn.copy_records_to_table(
            "withdrawals", records=rows.withdrawals, columns=_WITHDRAWAL_COLUMNS
        )
    if rows.realized:
        await conn.copy_records_to_table(
            "realized_pnl", records=rows.realized, columns=("user_id", "market_id", "amount")
        )
    if rows.markets:
        await conn.execute(_UPDATE_MARKETS, *_market_columns(rows))
