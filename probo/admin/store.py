"""SQL of the back office: users with their money, the ledger's transfers, the stats.

Reads only. Every filter has an index (schema.sql, "Accounts and back-office"): users by
id, phone prefix, display name prefix (ranges in byte order, on `text_pattern_ops`); transfers by account (both sides), kind (all
but `trade`, which walks the primary key), and a market's fee references.
"""

from __future__ import annotations

import asyncpg

from probo.web import BIGINT_MAX

_USER = """
SELECT u.id, u.phone, u.display_name, u.role, u.suspended, u.suspended_at, u.created_at,
       coalesce(a.balance, 0) AS balance,
       coalesce((SELECT sum(o.price::bigint * (o.quantity - o.filled_quantity))::bigint
                 FROM orders o
                 WHERE o.user_id = u.id AND o.status = 'open' AND o.side = 'buy'), 0) AS locked,
       coalesce((SELECT k.status FROM kyc_requests k
                 WHERE k.user_id = u.id ORDER BY k.id DESC LIMIT 1), 'NONE') AS kyc_status
FROM users u LEFT JOIN accounts a ON a.user_id = u.id
"""


def prefix_range(prefix: str) -> tuple[str, str]:
    """[low, high) of the strings starting with `prefix` (ASCII), in byte order: what a
    `text_pattern_ops` index finds with a generic plan too (a LIKE needs its pattern
    known when the statement is planned)."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


class _Arguments:
    """Numbered query arguments: only those a statement uses are sent (Postgres cannot
    type a parameter the statement never names)."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def __call__(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


async def users(
    conn: asyncpg.Connection,
    *,
    user_id: int | None,
    phone_prefixes: list[str],
    name_prefix: str | None,
    before_id: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Users matching any of the criteria given (all users if none), newest first."""
    arg = _Arguments()
    matches = []
    if user_id is not None:
        matches.append(f"u.id = {arg(user_id)}")
    for prefix in phone_prefixes:
        low, high = prefix_range(prefix)
        matches.append(f"(u.phone ~>=~ {arg(low)} AND u.phone ~<~ {arg(high)})")
    if name_prefix is not None:
        low, high = prefix_range(name_prefix.lower())
        name = "lower(u.display_name)"
        matches.append(f"({name} ~>=~ {arg(low)} AND {name} ~<~ {arg(high)})")
    where = f"({' OR '.join(matches)}) AND " if matches else ""
    before = arg(before_id if before_id is not None else BIGINT_MAX)
    return await conn.fetch(
        f"{_USER} WHERE {where}u.id < {before} ORDER BY u.id DESC LIMIT {arg(limit)}",
        *arg.values,
    )


async def user(conn: asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"{_USER} WHERE u.id = $1", user_id)


async def cash_account_id(conn: asyncpg.Connection, user_id: int) -> int | None:
    return await conn.fetchval("SELECT id FROM accounts WHERE user_id = $1", user_id)


async def escrow_account_id(conn: asyncpg.Connection, market_id: int) -> int | None:
    return await conn.fetchval("SELECT id FROM accounts WHERE market_id = $1", market_id)


async def transfers(
    conn: asyncpg.Connection,
    *,
    kind: str | None,
    account_id: int | None,
    market_id: int | None,
    escrow_id: int | None,
    before_id: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Transfers newest first, ids below `before_id`, matching every filter given:
    `kind`; touching `account_id` (a user's cash); the market's (touching its escrow
    `escrow_id`, or referring to `market_id`: payouts and their fees).

    Each filter is answered from an index: the rows come from the most selective one
    (an account's two sides, else the market's escrow sides and fee references, else
    the kind), each branch in id order and cut at `limit`, the other filters checked
    on the way."""
    arg = _Arguments()
    conditions = [f"id < {arg(before_id if before_id is not None else BIGINT_MAX)}"]
    limit_arg = arg(limit)
    if kind is not None:
        # Spelled out for the partial index: the planner cannot prove it from a parameter.
        conditions.append(
            f"kind = {arg(kind)}" + ("" if kind == "trade" else " AND kind <> 'trade'")
        )
    market_sources: list[str] = []
    if market_id is not None:
        if escrow_id is not None:
            escrow = arg(escrow_id)
            market_sources += [f"debit_account_id = {escrow}", f"credit_account_id = {escrow}"]
        market_sources.append(f"(ref_type = 'market' AND ref_id = {arg(market_id)})")
    if account_id is not None:
        account = arg(account_id)
        sources = [f"debit_account_id = {account}", f"credit_account_id = {account}"]
        if market_sources:
            conditions.append(f"({' OR '.join(market_sources)})")
    elif market_sources:
        sources = market_sources
    else:
        sources = ["true"]
    where = " AND ".join(conditions)
    branches = " UNION ".join(
        f"(SELECT * FROM transfers WHERE {source} AND {where} ORDER BY id DESC LIMIT {limit_arg})"
        for source in sources
    )
    return await conn.fetch(
        f"""
        SELECT t.id, t.debit_account_id, t.credit_account_id, t.amount, t.kind, t.ref_type,
               t.ref_id, t.created_at,
               d.kind AS debit_kind, d.user_id AS debit_user_id, d.market_id AS debit_market_id,
               c.kind AS credit_kind, c.user_id AS credit_user_id, c.market_id AS credit_market_id
        FROM ({branches}) AS t
        LEFT JOIN accounts d ON d.id = t.debit_account_id
        LEFT JOIN accounts c ON c.id = t.credit_account_id
        ORDER BY t.id DESC
        LIMIT {limit_arg}
        """,
        *arg.values,
    )


async def stats(conn: asyncpg.Connection, fees_account_id: int) -> asyncpg.Record:
    return await conn.fetchrow(
        """
        SELECT
            (SELECT count(*) FROM users)::bigint AS users,
            (SELECT count(*) FROM users WHERE created_at > now() - interval '24 hours')
                AS users_24h,
            (SELECT coalesce(sum(amount), 0)::bigint FROM deposits
             WHERE status = 'completed' AND completed_at > now() - interval '24 hours')
                AS deposits_24h,
            (SELECT coalesce(sum(amount), 0)::bigint FROM withdrawals
             WHERE created_at > now() - interval '24 hours') AS withdrawals_24h,
            -- Per market, on its (market_id, created_at) index: no index on trades' time alone.
            (SELECT coalesce(sum(v.quantity), 0)::bigint FROM markets m CROSS JOIN LATERAL
                (SELECT sum(t.quantity) AS quantity FROM trades t
                 WHERE t.market_id = m.id AND t.created_at > now() - interval '24 hours') v)
                AS volume_24h,
            coalesce((SELECT balance FROM accounts WHERE id = $1), 0) AS fees_total,
            -- SPEC §3 invariant 4: an unresolved market's escrow is 1000 per YES outstanding.
            (SELECT (coalesce(sum(a.balance), 0) / 1000)::bigint FROM markets m
             JOIN accounts a ON a.market_id = m.id WHERE m.status <> 'resolved')
                AS open_interest,
            (SELECT count(*) FROM markets WHERE status = 'open') AS open_markets,
            (SELECT count(*) FROM kyc_requests WHERE status = 'PENDING') AS pending_kyc,
            (SELECT count(*) FROM withdrawals WHERE status = 'pending') AS pending_withdrawals
        """,
        fees_account_id,
    )
