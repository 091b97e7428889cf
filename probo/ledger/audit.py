"""`probo audit`: check the SPEC §3 ledger invariants against a database.

Each breach is reported by name with the offending rows, so an operator can see which
rule broke and where. Beyond §3: `payouts_pending` holds exactly what withdrawals on
their way out owe (SPEC §11). Invariant 5 (engine equals Postgres) needs a live engine and is
checked by `engine_breaches` with the engine's snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
import msgspec

from probo.ledger.types import PAYOUTS_PENDING_ACCOUNT_ID
from probo.orderbook import CONTRACT_PAYOUT

BREACH_ROWS_MAX = 20  # rows named per breach; the count says how many there were


class Breach(msgspec.Struct, frozen=True):
    invariant: str
    message: str


async def _rows(conn: asyncpg.Connection, sql: str) -> list[asyncpg.Record]:
    return await conn.fetch(sql)


def _name_rows(rows: list[asyncpg.Record], fmt: str) -> str:
    shown = "; ".join(fmt.format(**dict(r)) for r in rows[:BREACH_ROWS_MAX])
    more = f" (and {len(rows) - BREACH_ROWS_MAX} more)" if len(rows) > BREACH_ROWS_MAX else ""
    return shown + more


async def ledger_breaches(conn: asyncpg.Connection) -> list[Breach]:
    """Every breach of SPEC §3 invariants 1-4, read in one consistent snapshot."""
    breaches: list[Breach] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval("SELECT coalesce(sum(balance), 0) FROM accounts")
        if total != 0:
            breaches.append(
                Breach("1-balances-sum-to-zero", f"account balances sum to {total}, not 0")
            )

        rows = await _rows(
            conn,
            """
            SELECT a.id, a.kind, a.balance,
                   coalesce(c.total, 0) - coalesce(d.total, 0) AS from_transfers
            FROM accounts a
            LEFT JOIN (SELECT credit_account_id AS id, sum(amount) AS total
                       FROM transfers GROUP BY 1) c ON c.id = a.id
            LEFT JOIN (SELECT debit_account_id AS id, sum(amount) AS total
                       FROM transfers GROUP BY 1) d ON d.id = a.id
            WHERE a.balance <> coalesce(c.total, 0) - coalesce(d.total, 0)
            ORDER BY a.id
            """,
        )
        if rows:
            breaches.append(
                Breach(
                    "2-balance-equals-transfers",
                    f"{len(rows)} account(s) disagree with their transfers: "
                    + _name_rows(
                        rows,
                        "account {id} ({kind}) balance {balance} vs transfers {from_transfers}",
                    ),
                )
            )

        # Transfers carry no foreign keys (the writer's speed): check what a key would.
        rows = await _rows(
            conn,
            """
            SELECT t.id, t.debit_account_id, t.credit_account_id FROM transfers t
            WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.debit_account_id)
               OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.credit_account_id)
            ORDER BY t.id
            """,
        )
        if rows:
            breaches.append(
                Breach(
                    "2-transfers-name-accounts",
                    f"{len(rows)} transfer(s) name an unknown account: "
                    + _name_rows(rows, "transfer {id} ({debit_account_id} -> {credit_account_id})"),
                )
            )

        rows = await _rows(
            conn,
            "SELECT id, kind, balance FROM accounts "
            "WHERE kind IN ('user_cash', 'market_escrow') AND balance < 0 ORDER BY id",
        )
        if rows:
            breaches.append(
                Breach(
                    "3-no-negative-cash-or-escrow",
                    _name_rows(rows, "account {id} ({kind}) balance {balance}"),
                )
            )

        rows = await _rows(
            conn,
            f"""
            SELECT m.id, m.status, coalesce(a.balance, 0) AS escrow,
                   coalesce(p.yes, 0) AS yes, coalesce(p.no, 0) AS no
            FROM markets m
            LEFT JOIN accounts a ON a.market_id = m.id
            LEFT JOIN (SELECT market_id, sum(yes_quantity) AS yes, sum(no_quantity) AS no
                       FROM positions GROUP BY 1) p ON p.market_id = m.id
            WHERE CASE WHEN m.status = 'resolved' THEN coalesce(a.balance, 0) <> 0
                       ELSE coalesce(a.balance, 0) <> {CONTRACT_PAYOUT} * coalesce(p.yes, 0)
                            OR coalesce(p.yes, 0) <> coalesce(p.no, 0) END
            ORDER BY m.id
            """,
        )
        if rows:
            breaches.append(
                Breach(
                    "4-escrow-backs-contracts",
                    _name_rows(rows, "market {id} ({status}) escrow {escrow}, YES {yes}, NO {no}"),
                )
            )

        held, owed = await conn.fetchrow(
            f"SELECT (SELECT balance FROM accounts WHERE id = {PAYOUTS_PENDING_ACCOUNT_ID}), "
            "(SELECT coalesce(sum(amount), 0) FROM withdrawals "
            " WHERE status IN ('pending', 'processing'))"
        )
        if held != owed:
            breaches.append(
                Breach(
                    "payouts-pending",
                    f"payouts_pending holds {held} paise but withdrawals pending or processing "
                    f"owe {owed}",
                )
            )

        triggers = await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'transfers'::regclass "
            "AND tgname IN ('transfers_append_only', 'transfers_no_truncate') AND tgenabled <> 'D'"
        )
        if triggers != 2:
            breaches.append(
                Breach(
                    "append-only",
                    "the triggers that keep transfers append-only are missing or disabled",
                )
            )
    return breaches


class EngineState(msgspec.Struct, frozen=True):
    """What invariant 5 compares: the engine's cash per user, contracts per (user,
    market), escrow per market and open orders' remaining quantity."""

    cash: dict[int, int]
    positions: dict[tuple[int, int], tuple[int, int]]
    escrow: dict[int, int]
    open_orders: dict[int, int]


def _differences(what: str, engine: Mapping, database: Mapping, zero: object) -> list[str]:
    keys = sorted(
        k for k in engine.keys() | database.keys() if engine.get(k, zero) != database.get(k, zero)
    )
    return [
        f"{what} {k}: engine {engine.get(k, zero)} vs database {database.get(k, zero)}"
        for k in keys
    ]


async def engine_breaches(conn: asyncpg.Connection, engine: EngineState) -> list[Breach]:
    """Invariant 5: with the engine idle and the writer drained, the engine's balances,
    positions, escrows and open orders equal Postgres's."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cash = dict(
            await conn.fetch("SELECT user_id, balance FROM accounts WHERE user_id IS NOT NULL")
        )
        escrow = dict(
            await conn.fetch("SELECT market_id, balance FROM accounts WHERE market_id IS NOT NULL")
        )
        positions = {
            (r[0], r[1]): (r[2], r[3])
            for r in await conn.fetch(
                "SELECT user_id, market_id, yes_quantity, no_quantity FROM positions "
                "WHERE yes_quantity > 0 OR no_quantity > 0"
            )
        }
        open_orders = dict(
            await conn.fetch(
                "SELECT id, quantity - filled_quantity FROM orders WHERE status = 'open'"
            )
        )
    differing = (
        _differences("user cash", engine.cash, cash, 0)
        + _differences("position (user, market)", engine.positions, positions, (0, 0))
        + _differences("market escrow", engine.escrow, escrow, 0)
        + _differences("open order", engine.open_orders, open_orders, None)
    )
    if not differing:
        return []
    shown = "; ".join(differing[:BREACH_ROWS_MAX])
    more = (
        f" (and {len(differing) - BREACH_ROWS_MAX} more)"
        if len(differing) > BREACH_ROWS_MAX
        else ""
    )
    return [Breach("5-engine-equals-database", f"{len(differing)} difference(s): {shown}{more}")]


async def audit_url(url: str) -> list[Breach]:
    conn = await asyncpg.connect(url)
    try:
        return await ledger_breaches(conn)
    finally:
        await conn.close()
