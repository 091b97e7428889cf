"""SQL of KYC: verification requests, read whole with their user's phone (unmasked:
masking is the service's), a user's latest request and its status, who holds a
verified PAN, the admin's queue and decision."""

from __future__ import annotations

import asyncpg

from probo.kyc.types import KycAdminView, KycStatus, KycSubmission
from probo.web import BIGINT_MAX

_COLUMNS = "k.id, k.user_id, u.phone, k.name, k.pan, k.bank_account, k.ifsc, k.status, k.reason, k.created_at, k.decided_at"
_FROM = "FROM kyc_requests k JOIN users u ON u.id = k.user_id"


def _request(row: asyncpg.Record) -> KycAdminView:
    return KycAdminView(**{key: row[key] for key in KycAdminView.__struct_fields__})


async def kyc_status_of(conn: asyncpg.Connection, user_id: int) -> KycStatus:
    """The status of the user's latest request; NONE if they never sent one."""
    status = await conn.fetchval(
        "SELECT status FROM kyc_requests WHERE user_id = $1 ORDER BY id DESC LIMIT 1", user_id
    )
    return status or "NONE"


async def latest_request(conn: asyncpg.Connection, user_id: int) -> KycAdminView | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} {_FROM} WHERE k.user_id = $1 ORDER BY k.id DESC LIMIT 1", user_id
    )
    return None if row is None else _request(row)


async def verified_request(conn: asyncpg.Connection, user_id: int) -> KycAdminView | None:
    """The user's verified request (where payouts go); None if they have none."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} {_FROM} WHERE k.user_id = $1 AND k.status = 'VERIFIED' "
        "ORDER BY k.id DESC LIMIT 1",
        user_id,
    )
    return None if row is None else _request(row)


async def pan_verified_for_another_user(conn: asyncpg.Connection, pan: str, user_id: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM kyc_requests WHERE pan = $1 AND status = 'VERIFIED' AND user_id <> $2",
            pan,
            user_id,
        )
    )


async def insert_request(
    conn: asyncpg.Connection, user_id: int, submission: KycSubmission
) -> KycAdminView:
    """A new PENDING request. Raises UniqueViolationError if the user has one pending."""
    row = await conn.fetchrow(
        f"WITH k AS (INSERT INTO kyc_requests (user_id, pan, name, bank_account, ifsc) "
        f"VALUES ($1, $2, $3, $4, $5) RETURNING *) "
        f"SELECT {_COLUMNS} FROM k JOIN users u ON u.id = k.user_id",
        user_id,
        submission.pan,
        submission.name,
        submission.bank_account,
        submission.ifsc,
    )
    return _request(row)


async def requests(
    conn: asyncpg.Connection, *, status: str | None, before_id: int | None, limit: int
) -> list[KycAdminView]:
    """Requests newest first, ids below `before_id`, of any status or of `status`."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} {_FROM} WHERE ($1::text IS NULL OR k.status = $1) AND k.id < $2 "
        f"ORDER BY k.id DESC LIMIT $3",
        status,
        before_id if before_id is not None else BIGINT_MAX,
        limit,
    )
    return [_request(r) for r in rows]


async def request_by_id(conn: asyncpg.Connection, kyc_id: int) -> KycAdminView | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} {_FROM} WHERE k.id = $1", kyc_id)
    return None if row is None else _request(row)


async def lock_request_status(conn: asyncpg.Connection, kyc_id: int) -> KycStatus | None:
    """The request's status, locked until the caller's transaction ends; None if no such request."""
    return await conn.fetchval("SELECT status FROM kyc_requests WHERE id = $1 FOR UPDATE", kyc_id)


async def decide_request(
    conn: asyncpg.Connection, kyc_id: int, decision: str, reason: str | None, admin_id: int
) -> None:
    """Record the admin's decision. Raises UniqueViolationError when verifying a PAN
    another account has verified."""
    await conn.execute(
        "UPDATE kyc_requests SET status = $2, reason = $3, decided_by = $4, decided_at = now() "
        "WHERE id = $1",
        kyc_id,
        decision,
        reason,
        admin_id,
    )
