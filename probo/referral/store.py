"""SQL of referrals: the referral relation and its bonus, and what a referral reads
and changes on users (who holds a code, the row locks, `is_new`). The users table
itself is auth's (probo/auth)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from probo.referral.types import Referee

# --- users ---------------------------------------------------------------------------------


async def user_id_by_referral_code(conn: asyncpg.Connection, code: str) -> int | None:
    return await conn.fetchval("SELECT id FROM users WHERE referral_code = $1", code)


async def lock_users(conn: asyncpg.Connection, user_ids: list[int]) -> list[asyncpg.Record]:
    """(id, is_new) of each user that exists, locked in id order until the caller's
    transaction ends. NO KEY UPDATE leaves the foreign-key checks of an insert naming
    them (a referral) unblocked."""
    return await conn.fetch(
        "SELECT id, is_new FROM users WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE",
        user_ids,
    )


async def mark_not_new(conn: asyncpg.Connection, user_id: int) -> None:
    await conn.execute("UPDATE users SET is_new = false WHERE id = $1", user_id)


async def referral_code_of(conn: asyncpg.Connection, user_id: int) -> str | None:
    return await conn.fetchval("SELECT referral_code FROM users WHERE id = $1", user_id)


# --- referrals -----------------------------------------------------------------------------


async def was_referred(conn: asyncpg.Connection, user_id: int) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM referrals WHERE referred_user_id = $1", user_id))


async def was_referred_by(
    conn: asyncpg.Connection, referred_user_id: int, referrer_user_id: int
) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM referrals WHERE referred_user_id = $1 AND referrer_user_id = $2",
            referred_user_id,
            referrer_user_id,
        )
    )


async def insert_referral(
    conn: asyncpg.Connection,
    referred_user_id: int,
    referrer_user_id: int,
    bonus: int,
    transfer_id: int | None,
) -> datetime:
    """Record the referral; when it was made."""
    return await conn.fetchval(
        "INSERT INTO referrals (referred_user_id, referrer_user_id, bonus, transfer_id) "
        "VALUES ($1, $2, $3, $4) RETURNING created_at",
        referred_user_id,
        referrer_user_id,
        bonus,
        transfer_id,
    )


async def referees(conn: asyncpg.Connection, referrer_user_id: int, limit: int) -> list[Referee]:
    """The users `referrer_user_id` referred, the latest first."""
    rows = await conn.fetch(
        "SELECT referred_user_id, created_at FROM referrals WHERE referrer_user_id = $1 "
        "ORDER BY created_at DESC LIMIT $2",
        referrer_user_id,
        limit,
    )
    return [Referee(user_id=r["referred_user_id"], created_at=r["created_at"]) for r in rows]


async def referral_totals(conn: asyncpg.Connection, referrer_user_id: int) -> tuple[int, int]:
    """(how many users `referrer_user_id` referred, the bonus it earned in all)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, coalesce(sum(bonus), 0)::bigint AS earned FROM referrals WHERE referrer_user_id = $1",
        referrer_user_id,
    )
    return row["n"], row["earned"]
