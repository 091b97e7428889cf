"""SQL of auth: users (sign-up, login, the profile, suspension), sessions and revoked
sessions. The OTPs are
in Redis (otp.py), and so is the pub/sub that spreads revocations (revocations.py)."""

from __future__ import annotations

import secrets
from datetime import datetime

import asyncpg

from probo.web import BIGINT_MAX

REFERRAL_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
REFERRAL_CODE_LENGTH = 8


def is_referral_code(code: str) -> bool:
    """Whether `code` (upper case) has the shape of a referral code."""
    return len(code) == REFERRAL_CODE_LENGTH and set(code) <= set(REFERRAL_CODE_ALPHABET)


REFERRAL_CODE_TRIES_MAX = 10

_USER_COLUMNS = "id, phone, referral_code, is_new, role, created_at, display_name, suspended"


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


async def user_id_by_phone(conn: asyncpg.Connection, phone: str) -> int | None:
    return await conn.fetchval("SELECT id FROM users WHERE phone = $1", phone)


async def phone_of(conn: asyncpg.Connection, user_id: int) -> str | None:
    return await conn.fetchval("SELECT phone FROM users WHERE id = $1", user_id)


# --- revoked sessions ----------------------------------------------------------------------


async def delete_expired_revocations(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM revoked_sessions WHERE expires_at < now()")


async def revocations(conn: asyncpg.Connection, count_max: int) -> list[asyncpg.Record]:
    """(jti, expires_at in epoch seconds) of up to `count_max` revoked sessions."""
    return await conn.fetch(
        "SELECT jti, extract(epoch FROM expires_at)::bigint AS expires_at FROM revoked_sessions LIMIT $1",
        count_max,
    )


async def insert_revocations(
    conn: asyncpg.Connection, user_id: int, revoked: list[tuple[str, datetime]]
) -> None:
    """Revoke each (jti, expires_at) of `user_id`; one already revoked changes nothing."""
    await conn.execute(
        "INSERT INTO revoked_sessions (jti, user_id, expires_at) "
        "SELECT jti, $1, expires_at FROM unnest($2::text[], $3::timestamptz[]) AS r(jti, expires_at) "
        "ON CONFLICT (jti) DO NOTHING",
        user_id,
        [jti for jti, _ in revoked],
        [expires_at for _, expires_at in revoked],
    )


async def claim_revocation(
    conn: asyncpg.Connection, jti: str, user_id: int, expires_at: datetime
) -> bool:
    """Revoke `jti`: False if it was revoked already (by anyone, committed or not: the
    key makes a concurrent revoker wait for this one's transaction)."""
    revoked = await conn.fetchval(
        "INSERT INTO revoked_sessions (jti, user_id, expires_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (jti) DO NOTHING RETURNING true",
        jti,
        user_id,
        expires_at,
    )
    return bool(revoked)


# --- sessions ------------------------------------------------------------------------------


async def insert_session(
    conn: asyncpg.Connection | asyncpg.Pool,
    user_id: int,
    jti: str,
    user_agent: str,
    expires_at: datetime,
) -> int:
    return await conn.fetchval(
        "INSERT INTO sessions (user_id, jti, user_agent, expires_at) VALUES ($1, $2, $3, $4) "
        "RETURNING id",
        user_id,
        jti,
        user_agent,
        expires_at,
    )


async def live_sessions(
    conn: asyncpg.Connection, user_id: int, *, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    """The user's unrevoked, unexpired sessions, newest first, ids below `before_id`."""
    return await conn.fetch(
        "SELECT id, jti, created_at, last_seen_at, user_agent FROM sessions "
        "WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() AND id < $2 "
        "ORDER BY id DESC LIMIT $3",
        user_id,
        before_id if before_id is not None else BIGINT_MAX,
        limit,
    )


async def revoke_session(
    conn: asyncpg.Connection, user_id: int, session_id: int
) -> asyncpg.Record | None:
    """Mark the user's live session revoked: (jti, expires_at), or None if there is none."""
    return await conn.fetchrow(
        "UPDATE sessions SET revoked_at = now() "
        "WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > now() "
        "RETURNING jti, expires_at",
        session_id,
        user_id,
    )


async def revoke_session_by_jti(conn: asyncpg.Connection, jti: str) -> None:
    await conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE jti = $1 AND revoked_at IS NULL", jti
    )


async def revoke_user_sessions(conn: asyncpg.Connection, user_id: int) -> list[asyncpg.Record]:
    """Mark every live session of the user revoked: their (jti, expires_at)."""
    return await conn.fetch(
        "UPDATE sessions SET revoked_at = now() "
        "WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() "
        "RETURNING jti, expires_at",
        user_id,
    )


async def move_session(
    conn: asyncpg.Connection, old_jti: str, new_jti: str, user_agent: str, expires_at: datetime
) -> int | None:
    """Move the live session of `old_jti` to a new token: its id, or None if it has none."""
    return await conn.fetchval(
        "UPDATE sessions SET jti = $2, user_agent = $3, expires_at = $4, last_seen_at = now() "
        "WHERE jti = $1 AND revoked_at IS NULL RETURNING id",
        old_jti,
        new_jti,
        user_agent,
        expires_at,
    )


async def touch_sessions(conn: asyncpg.Connection, jtis: list[str]) -> None:
    await conn.execute(
        "UPDATE sessions SET last_seen_at = now() WHERE jti = ANY ($1::text[])", jtis
    )


# --- profile and suspension ------------------------------------------------------------------


async def set_display_name(
    conn: asyncpg.Connection, user_id: int, display_name: str
) -> asyncpg.Record | None:
    """Raises asyncpg.UniqueViolationError when another user has the name (any case)."""
    return await conn.fetchrow(
        f"UPDATE users SET display_name = $2 WHERE id = $1 RETURNING {_USER_COLUMNS}",
        user_id,
        display_name,
    )


async def lock_user(conn: asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    """The user, locked until the caller's transaction ends."""
    return await conn.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE", user_id
    )


async def set_suspended(conn: asyncpg.Connection, user_id: int, suspended: bool) -> None:
    """Suspend (keeping the first suspension's time while it lasts) or lift it."""
    await conn.execute(
        "UPDATE users SET suspended = $2, "
        "suspended_at = CASE WHEN $2 THEN coalesce(suspended_at, now()) END WHERE id = $1",
        user_id,
        suspended,
    )


async def suspended_users(conn: asyncpg.Connection) -> list[int]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM users WHERE suspended")]
