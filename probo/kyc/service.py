"""KYC rules: format checks, one pending request per user, one verified account per
PAN, and the admin's decision. PAN and account numbers leave this module unmasked only
in admin views, and are never logged."""

from __future__ import annotations

import re

import asyncpg
from loguru import logger

from probo.infra import connection
from probo.kyc.types import KycAdminPage, KycAdminView, KycStatus, KycSubmission, KycView
from probo.web import ApiError, not_found, page, validation_error

PAN_PATTERN = re.compile(r"^[A-Z]{5}[0-9]{4}[A-Z]$")
IFSC_PATTERN = re.compile(r"^[A-Z]{4}0[A-Z0-9]{6}$")
ACCOUNT_PATTERN = re.compile(r"^[0-9]{9,18}$")
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z .'\-]{0,99}$")
UNMASKED_TAIL = 4

_COLUMNS = "k.id, k.user_id, u.phone, k.name, k.pan, k.bank_account, k.ifsc, k.status, k.reason, k.created_at, k.decided_at"
_FROM = "FROM kyc_requests k JOIN users u ON u.id = k.user_id"


def mask(value: str) -> str:
    return "X" * max(0, len(value) - UNMASKED_TAIL) + value[-UNMASKED_TAIL:]


def _clean(submission: KycSubmission) -> KycSubmission:
    pan = submission.pan.strip().upper()
    ifsc = submission.ifsc.strip().upper()
    account = re.sub(r"\s", "", submission.bank_account)
    name = " ".join(submission.name.split())
    if not PAN_PATTERN.match(pan):
        raise validation_error("pan must look like AAAAA9999A")
    if not IFSC_PATTERN.match(ifsc):
        raise validation_error("ifsc must look like AAAA0XXXXXX")
    if not ACCOUNT_PATTERN.match(account):
        raise validation_error("bank_account must be 9 to 18 digits")
    if not NAME_PATTERN.match(name):
        raise validation_error(
            "name must be 1 to 100 letters, spaces, dots, hyphens or apostrophes"
        )
    return KycSubmission(pan=pan, name=name, bank_account=account, ifsc=ifsc)


def _user_view(row: asyncpg.Record) -> KycView:
    return KycView(
        id=row["id"],
        status=row["status"],
        name=row["name"],
        pan=mask(row["pan"]),
        bank_account=mask(row["bank_account"]),
        ifsc=row["ifsc"],
        reason=row["reason"],
        created_at=row["created_at"],
        decided_at=row["decided_at"],
    )


def _admin_view(row: asyncpg.Record) -> KycAdminView:
    return KycAdminView(**{key: row[key] for key in KycAdminView.__struct_fields__})


def pan_in_use() -> ApiError:
    return ApiError(409, "pan_in_use", "this PAN is already verified on another account")


async def kyc_status_of(conn: asyncpg.Connection, user_id: int) -> KycStatus:
    status = await conn.fetchval(
        "SELECT status FROM kyc_requests WHERE user_id = $1 ORDER BY id DESC LIMIT 1", user_id
    )
    return status or "NONE"


class KycService:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def submit(self, user_id: int, submission: KycSubmission) -> tuple[KycView, bool]:
        """(the request, whether this call created it). A repeat of the pending request returns it."""
        wanted = _clean(submission)
        async with connection(self._pool) as conn:
            latest = await self._latest(conn, user_id)
            if latest is not None and latest["status"] == "PENDING":
                return self._repeat_or_refuse(latest, wanted)
            if latest is not None and latest["status"] == "VERIFIED":
                raise ApiError(409, "kyc_verified", "KYC is already verified")
            taken = await conn.fetchval(
                "SELECT 1 FROM kyc_requests WHERE pan = $1 AND status = 'VERIFIED' AND user_id <> $2",
                wanted.pan,
                user_id,
            )
            if taken:
                raise pan_in_use()
            try:
                row = await conn.fetchrow(
                    f"WITH k AS (INSERT INTO kyc_requests (user_id, pan, name, bank_account, ifsc) "
                    f"VALUES ($1, $2, $3, $4, $5) RETURNING *) "
                    f"SELECT {_COLUMNS} FROM k JOIN users u ON u.id = k.user_id",
                    user_id,
                    wanted.pan,
                    wanted.name,
                    wanted.bank_account,
                    wanted.ifsc,
                )
            except asyncpg.UniqueViolationError:  # a concurrent submission won
                latest = await self._latest(conn, user_id)
                assert latest is not None
                return self._repeat_or_refuse(latest, wanted)
        logger.bind(user_id=user_id, kyc_id=row["id"]).info("KYC submitted")
        return _user_view(row), True

    @staticmethod
    def _repeat_or_refuse(latest: asyncpg.Record, wanted: KycSubmission) -> tuple[KycView, bool]:
        same = all(
            latest[field] == getattr(wanted, field) for field in KycSubmission.__struct_fields__
        )
        if same and latest["status"] == "PENDING":
            return _user_view(latest), False
        raise ApiError(409, "kyc_pending", "a KYC request is already under review")

    @staticmethod
    async def _latest(conn: asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
        return await conn.fetchrow(
            f"SELECT {_COLUMNS} {_FROM} WHERE k.user_id = $1 ORDER BY k.id DESC LIMIT 1", user_id
        )

    async def latest(self, user_id: int) -> KycView:
        async with connection(self._pool) as conn:
            row = await self._latest(conn, user_id)
        return KycView(status="NONE") if row is None else _user_view(row)

    async def queue(self, status: str | None, limit: int, before_id: int | None) -> KycAdminPage:
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} {_FROM} WHERE ($1::text IS NULL OR k.status = $1) AND k.id < $2 "
                f"ORDER BY k.id DESC LIMIT $3",
                status,
                before_id if before_id is not None else 2**63 - 1,
                limit + 1,
            )
        rows, cursor = page(rows, limit, lambda r: r["id"])
        return KycAdminPage(items=[_admin_view(r) for r in rows], next_cursor=cursor)

    async def decide(
        self, admin_id: int, kyc_id: int, decision: str, reason: str | None
    ) -> KycAdminView:
        reason = reason.strip() if reason else None
        if decision == "REJECTED" and not reason:
            raise validation_error("a rejection needs a reason")
        async with connection(self._pool) as conn, conn.transaction():
            current = await conn.fetchval(
                "SELECT status FROM kyc_requests WHERE id = $1 FOR UPDATE", kyc_id
            )
            if current is None:
                raise not_found("KYC request")
            if current != "PENDING":
                raise ApiError(409, "invalid_transition", f"the request is already {current}")
            try:
                async with conn.transaction():
                    await conn.execute(
                        "UPDATE kyc_requests SET status = $2, reason = $3, decided_by = $4, decided_at = now() "
                        "WHERE id = $1",
                        kyc_id,
                        decision,
                        reason,
                        admin_id,
                    )
            except asyncpg.UniqueViolationError:
                raise pan_in_use() from None
            row = await conn.fetchrow(f"SELECT {_COLUMNS} {_FROM} WHERE k.id = $1", kyc_id)
        logger.bind(kyc_id=kyc_id, admin_id=admin_id).info("KYC decided: {}", decision)
        return _admin_view(row)
