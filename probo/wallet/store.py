"""SQL of the wallet: deposits (found by key, by the provider's order, completed under
a row lock), what a user's open buys hold next to the balance, and withdrawals through
their lifecycle after the ledger writer inserted them. Accounts and transfers are the
ledger's (probo/ledger)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from probo.wallet.types import AdminWithdrawal, Checkout, Deposit, Withdrawal, WithdrawalStatus
from probo.web import BIGINT_MAX

_DEPOSIT_COLUMNS = (
    "id, user_id, amount, status, idempotency_key, gateway, gateway_reference, failure_reason, "
    "transfer_id, provider_order_id, payment_session_id, provider_payment_id, created_at, "
    "completed_at"
)


def _deposit(row: asyncpg.Record) -> Deposit:
    checkout = None
    if row["payment_session_id"] is not None:
        checkout = Checkout(row["provider_order_id"], row["payment_session_id"])
    return Deposit(
        id=row["id"],
        amount=row["amount"],
        status=row["status"],
        provider=row["gateway"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        completed_at=row["completed_at"],
        checkout=checkout,
        reason=row["failure_reason"],
        provider_reference=row["provider_payment_id"] or row["gateway_reference"],
        transfer_id=row["transfer_id"],
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
    conn: asyncpg.Connection,
    *,
    user_id: int,
    idempotency_key: str,
    amount: int,
    provider: str,
    order_id: str,
    payment_session_id: str | None,
) -> Deposit | None:
    """A new pending deposit for the provider's order; None if the user already has
    one under this key. (Its order id is derived from the key, so a concurrent twin
    conflicts on both unique indexes, in either order: no conflict target.)"""
    row = await conn.fetchrow(
        "INSERT INTO deposits (user_id, idempotency_key, amount, gateway, provider_order_id, "
        "payment_session_id) VALUES ($1, $2, $3, $4, $5, $6) "
        f"ON CONFLICT DO NOTHING RETURNING {_DEPOSIT_COLUMNS}",
        user_id,
        idempotency_key,
        amount,
        provider,
        order_id,
        payment_session_id,
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


async def deposit_of_user(
    conn: asyncpg.Connection, user_id: int, deposit_id: int
) -> Deposit | None:
    row = await conn.fetchrow(
        f"SELECT {_DEPOSIT_COLUMNS} FROM deposits WHERE id = $1 AND user_id = $2",
        deposit_id,
        user_id,
    )
    return None if row is None else _deposit(row)


async def deposits_of_user(
    conn: asyncpg.Connection, user_id: int, *, before_id: int | None, limit: int
) -> list[Deposit]:
    rows = await conn.fetch(
        f"SELECT {_DEPOSIT_COLUMNS} FROM deposits WHERE user_id = $1 AND id < $2 "
        "ORDER BY id DESC LIMIT $3",
        user_id,
        before_id if before_id is not None else BIGINT_MAX,
        limit,
    )
    return [_deposit(row) for row in rows]


async def lock_deposit_of_order(
    conn: asyncpg.Connection, provider: str, order_id: str
) -> tuple[int, Deposit] | None:
    """(user id, the deposit) of the provider's order, locked until the caller's
    transaction ends; None for an order that is not ours."""
    row = await conn.fetchrow(
        f"SELECT {_DEPOSIT_COLUMNS} FROM deposits WHERE gateway = $1 AND provider_order_id = $2 "
        "FOR UPDATE",
        provider,
        order_id,
    )
    return None if row is None else (row["user_id"], _deposit(row))


async def complete_deposit(
    conn: asyncpg.Connection, deposit_id: int, payment_id: str | None, transfer_id: int
) -> Deposit:
    row = await conn.fetchrow(
        "UPDATE deposits SET status = 'completed', provider_payment_id = $2, transfer_id = $3, "
        f"failure_reason = NULL, completed_at = now() WHERE id = $1 RETURNING {_DEPOSIT_COLUMNS}",
        deposit_id,
        payment_id,
        transfer_id,
    )
    return _deposit(row)


async def close_deposit(
    conn: asyncpg.Connection,
    deposit_id: int,
    status: str,
    reason: str,
    payment_id: str | None,
) -> Deposit:
    """Failed, or under review: no money moved."""
    row = await conn.fetchrow(
        "UPDATE deposits SET status = $2, failure_reason = $3, "
        "provider_payment_id = coalesce($4, provider_payment_id) "
        f"WHERE id = $1 RETURNING {_DEPOSIT_COLUMNS}",
        deposit_id,
        status,
        reason,
        payment_id,
    )
    return _deposit(row)


async def pending_orders_to_check(
    conn: asyncpg.Connection,
    provider: str,
    *,
    older_than_s: float,
    checked_before_s: float,
    limit: int,
) -> list[str]:
    """Claim deposits pending longer than `older_than_s` and not asked about in the
    last `checked_before_s`, least recently asked first; their provider order ids."""
    rows = await conn.fetch(
        "UPDATE deposits SET reconciled_at = now() WHERE id IN ("
        "  SELECT id FROM deposits WHERE status = 'pending' AND gateway = $1"
        "  AND provider_order_id IS NOT NULL AND created_at < now() - make_interval(secs => $2)"
        "  AND (reconciled_at IS NULL OR reconciled_at < now() - make_interval(secs => $3))"
        "  ORDER BY coalesce(reconciled_at, created_at) LIMIT $4 FOR UPDATE SKIP LOCKED"
        ") RETURNING provider_order_id",
        provider,
        older_than_s,
        checked_before_s,
        limit,
    )
    return [row["provider_order_id"] for row in rows]


# --- withdrawals --------------------------------------------------------------------------

_WITHDRAWAL_COLUMNS = (
    "w.id, w.user_id, w.amount, w.fee, w.status, w.idempotency_key, w.created_at, "
    "w.completed_at, w.reason, w.decided_by, w.decided_at, w.provider, w.provider_reference, "
    "w.payout_requested_at"
)


def _withdrawal(row: asyncpg.Record) -> Withdrawal:
    return Withdrawal(
        id=row["id"],
        amount=row["amount"],
        fee=row["fee"],
        status=row["status"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        completed_at=row["completed_at"],
        reason=row["reason"],
    )


class WithdrawalRow:
    """A withdrawal as its lifecycle needs it: whose, how much, where it stands."""

    def __init__(self, row: asyncpg.Record) -> None:
        self.id: int = row["id"]
        self.user_id: int = row["user_id"]
        self.amount: int = row["amount"]
        self.fee: int = row["fee"]
        self.status: WithdrawalStatus = row["status"]
        self.payout_requested_at: datetime | None = row["payout_requested_at"]


async def withdrawal_by_key(
    conn: asyncpg.Connection, user_id: int, idempotency_key: str
) -> Withdrawal | None:
    row = await conn.fetchrow(
        f"SELECT {_WITHDRAWAL_COLUMNS} FROM withdrawals w "
        "WHERE w.user_id = $1 AND w.idempotency_key = $2",
        user_id,
        idempotency_key,
    )
    return None if row is None else _withdrawal(row)


async def withdrawal_by_id(conn: asyncpg.Connection, withdrawal_id: int) -> Withdrawal | None:
    row = await conn.fetchrow(
        f"SELECT {_WITHDRAWAL_COLUMNS} FROM withdrawals w WHERE w.id = $1", withdrawal_id
    )
    return None if row is None else _withdrawal(row)


async def withdrawals_of_user(
    conn: asyncpg.Connection, user_id: int, *, before_id: int | None, limit: int
) -> list[Withdrawal]:
    rows = await conn.fetch(
        f"SELECT {_WITHDRAWAL_COLUMNS} FROM withdrawals w WHERE w.user_id = $1 AND w.id < $2 "
        "ORDER BY w.id DESC LIMIT $3",
        user_id,
        before_id if before_id is not None else BIGINT_MAX,
        limit,
    )
    return [_withdrawal(row) for row in rows]


_ADMIN_COLUMNS = (
    f"{_WITHDRAWAL_COLUMNS}, u.phone, k.bank_account, k.ifsc "
    "FROM withdrawals w JOIN users u ON u.id = w.user_id "
    "LEFT JOIN LATERAL (SELECT bank_account, ifsc FROM kyc_requests "
    "    WHERE user_id = w.user_id AND status = 'VERIFIED' ORDER BY id DESC LIMIT 1) k ON true"
)


def _admin_withdrawal(row: asyncpg.Record) -> AdminWithdrawal:
    return AdminWithdrawal(**{name: row[name] for name in AdminWithdrawal.__struct_fields__})


async def admin_withdrawals(
    conn: asyncpg.Connection, status: str | None, *, before_id: int | None, limit: int
) -> list[AdminWithdrawal]:
    rows = await conn.fetch(
        f"SELECT {_ADMIN_COLUMNS} WHERE ($1::text IS NULL OR w.status = $1) AND w.id < $2 "
        "ORDER BY w.id DESC LIMIT $3",
        status,
        before_id if before_id is not None else BIGINT_MAX,
        limit,
    )
    return [_admin_withdrawal(row) for row in rows]


async def admin_withdrawal(conn: asyncpg.Connection, withdrawal_id: int) -> AdminWithdrawal | None:
    row = await conn.fetchrow(f"SELECT {_ADMIN_COLUMNS} WHERE w.id = $1", withdrawal_id)
    return None if row is None else _admin_withdrawal(row)


async def withdrawal_row(
    conn: asyncpg.Connection, withdrawal_id: int, *, lock: bool = False
) -> WithdrawalRow | None:
    """The row; with `lock`, locked until the caller's transaction ends."""
    row = await conn.fetchrow(
        f"SELECT {_WITHDRAWAL_COLUMNS} FROM withdrawals w WHERE w.id = $1"
        + (" FOR UPDATE" if lock else ""),
        withdrawal_id,
    )
    return None if row is None else WithdrawalRow(row)


async def decide_withdrawal(
    conn: asyncpg.Connection, withdrawal_id: int, admin_id: int, reason: str | None
) -> None:
    """An admin approved it: on to the payout."""
    await conn.execute(
        "UPDATE withdrawals SET status = 'processing', decided_by = $2, decided_at = now(), "
        "reason = $3 WHERE id = $1",
        withdrawal_id,
        admin_id,
        reason,
    )


async def close_withdrawal(
    conn: asyncpg.Connection,
    withdrawal_id: int,
    status: WithdrawalStatus,
    reason: str | None,
    *,
    decided_by: int | None = None,
) -> None:
    """Completed, failed or rejected: the end of its lifecycle."""
    await conn.execute(
        "UPDATE withdrawals SET status = $2, reason = coalesce($3, reason), completed_at = now(), "
        "decided_by = coalesce($4, decided_by), "
        "decided_at = CASE WHEN $4::bigint IS NULL THEN decided_at ELSE now() END WHERE id = $1",
        withdrawal_id,
        status,
        reason,
        decided_by,
    )


async def mark_payout_requested(
    conn: asyncpg.Connection, withdrawal_id: int, provider: str, reference: str | None
) -> None:
    await conn.execute(
        "UPDATE withdrawals SET provider = $2, provider_reference = coalesce($3, provider_reference), "
        "payout_requested_at = now() WHERE id = $1 AND status = 'processing'",
        withdrawal_id,
        provider,
        reference,
    )


async def payouts_to_drive(
    conn: asyncpg.Connection,
    *,
    unsent_after_s: float,
    unconfirmed_after_s: float,
    checked_before_s: float,
    limit: int,
) -> list[tuple[int, bool]]:
    """Claim processing withdrawals whose payout was never sent (after `unsent_after_s`,
    so the request that started it has had its turn) or is unconfirmed after
    `unconfirmed_after_s`, not looked at in the last `checked_before_s`; least recently
    looked at first. (withdrawal id, whether its payout was sent) each."""
    rows = await conn.fetch(
        "UPDATE withdrawals SET reconciled_at = now() WHERE id IN ("
        "  SELECT id FROM withdrawals WHERE status = 'processing' AND ("
        "    (payout_requested_at IS NULL"
        "     AND coalesce(decided_at, created_at) < now() - make_interval(secs => $1))"
        "    OR payout_requested_at < now() - make_interval(secs => $2))"
        "  AND (reconciled_at IS NULL OR reconciled_at < now() - make_interval(secs => $3))"
        "  ORDER BY coalesce(reconciled_at, created_at) LIMIT $4 FOR UPDATE SKIP LOCKED"
        ") RETURNING id, payout_requested_at IS NOT NULL AS sent",
        unsent_after_s,
        unconfirmed_after_s,
        checked_before_s,
        limit,
    )
    return [(row["id"], row["sent"]) for row in rows]
