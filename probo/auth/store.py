"""SQL of auth: users (sign-up, login, the profile) and revoked sessions. The OTPs are
in Redis (otp.py), and so is the pub/sub that spreads revocations (revocations.py)."""

from __future__ import annotations

import secrets
from datetime import datetime

import asyncpg

REFERRAL_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
REFERRAL_CODE_LENGTH = 8


def is_referral_code(code: str) -> bool:
    """Whether `code` (upper case) has the shape of a referral code."""
    return len(code) == REFERRAL_CODE_LENGTH and set(code) <= set(REFERRAL_CODE_ALPHABET)


REFERRAL_CODE_TRIES_MAX = 10

_USER_COLUMNS = "id, phone, referral_code, is_new, role, created_at"


def new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_CODE_ALPHABET) for _ in range(REFERRAL_CODE_LENGTH))


async def insert_user_if_new(
    conn: asyncpg.Connection, phone: str, role: str
) -> asyncpg.Record | None:
    """Insert a user for `phone`; None if the phone already has one."""
    for _ in range(REFERRAL_CODE_TRIES_MAX):
        try:
            async with conn.transaction():  # a savepoint: a code collision only retries this
                return await conn.fetchrow(
                    f"INSERT INTO users (phone, referral_code, role) VALUES ($1, $2, $3) "
                    f"ON CONFLICT (phone) DO NOTHING RETURNING {_USER_COLUMNS}",
                    phone,
                    new_referral_code(),
                    role,
                )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "users_referral_code_key":
                raise
    raise AssertionError("could not draw an unused referral code")


async def touch_login(conn: asyncpg.Connection, phone: str, role: str) -> asyncpg.Record:
    return await conn.fetchrow(
        f"UPDATE users SET last_login_at = now(), role = $2 WHERE phone = $1 RETURNING {_USER_COLUMNS}",
        phone,
        role,
    )


async def user_by_id(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: int
) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id)


async def phone_of(conn: asyncpg.Connection, user_id: int) -> str | None:
    return await conn.fetchval("SELECT phone FROM users WHERE id = $1", user_id)


# --- revoked sessions ----------------------------------------------------------------------


async def insert_revocation(
    conn: asyncpg.Connection, jti: str, user_id: int, expires_at: datetime
) -> None:
    """Revoke the session `jti` until `expires_at`; a second revocation changes nothing."""
    await conn.execute(
        "INSERT INTO revoked_sessions (jti, user_id, expires_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (jti) DO NOTHING",
        jti,
        user_id,
        expires_at,
    )


async def delete_expired_revocations(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM revoked_sessions WHERE expires_at < now()")


async def revocations(conn: asyncpg.Connection, count_max: int) -> list[asyncpg.Record]:
    """(jti, expires_at in epoch seconds) of up to `count_max` revoked sessions."""
    return await conn.fetch(
        "SELECT jti, extract(epoch FROM expires_at)::bigint AS expires_at FROM revoked_sessions LIMIT $1",
        count_max,
    )
