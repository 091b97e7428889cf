"""KYC rules: format checks, one pending request per user, one verified account per
PAN, and the admin's decision. PAN and account numbers leave this package unmasked only
in admin views, and are never logged."""

from __future__ import annotations

import re

import asyncpg
from loguru import logger

from probo.infra import connection
from probo.kyc import store
from probo.kyc.types import KycAdminPage, KycAdminView, KycSubmission, KycView
from probo.web import ApiError, not_found, page, validation_error

PAN_PATTERN = re.compile(r"^[A-Z]{5}[0-9]{4}[A-Z]$")
IFSC_PATTERN = re.compile(r"^[A-Z]{4}0[A-Z0-9]{6}$")
ACCOUNT_PATTERN = re.compile(r"^[0-9]{9,18}$")
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z .'\-]{0,99}$")
UNMASKED_TAIL = 4


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


def _user_view(request: KycAdminView) -> KycView:
    return KycView(
        id=request.id,
        status=request.status,
        name=request.name,
        pan=mask(request.pan),
        bank_account=mask(request.bank_account),
        ifsc=request.ifsc,
        reason=request.reason,
        created_at=request.created_at,
        decided_at=request.decided_at,
    )


def pan_in_use() -> ApiError:
    return ApiError(409, "pan_in_use", "this PAN is already verified on another account")


class KycService:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def submit(self, user_id: int, submission: KycSubmission) -> tuple[KycView, bool]:
        """(the request, whether this call created it). A repeat of the pending request returns it."""
        wanted = _clean(submission)
        async with connection(self._pool) as conn:
            latest = await store.latest_request(conn, user_id)
            if latest is not None and latest.status == "PENDING":
                return self._repeat_or_refuse(latest, wanted)
            if latest is not None and latest.status == "VERIFIED":
                raise ApiError(409, "kyc_verified", "KYC is already verified")
            if await store.pan_verified_for_another_user(conn, wanted.pan, user_id):
                raise pan_in_use()
            try:
                request = await store.insert_request(conn, user_id, wanted)
            except asyncpg.UniqueViolationError:  # a concurrent submission won
                latest = await store.latest_request(conn, user_id)
                assert latest is not None
                return self._repeat_or_refuse(latest, wanted)
        logger.bind(user_id=user_id, kyc_id=request.id).info("KYC submitted")
        return _user_view(request), True

    @staticmethod
    def _repeat_or_refuse(latest: KycAdminView, wanted: KycSubmission) -> tuple[KycView, bool]:
        same = all(
            getattr(latest, field) == getattr(wanted, field)
            for field in KycSubmission.__struct_fields__
        )
        if same and latest.status == "PENDING":
            return _user_view(latest), False
        raise ApiError(409, "kyc_pending", "a KYC request is already under review")

    async def latest(self, user_id: int) -> KycView:
        async with connection(self._pool) as conn:
            request = await store.latest_request(conn, user_id)
        return KycView(status="NONE") if request is None else _user_view(request)

    async def queue(self, status: str | None, limit: int, before_id: int | None) -> KycAdminPage:
        async with connection(self._pool) as conn:
            requests = await store.requests(
                conn, status=status, before_id=before_id, limit=limit + 1
            )
        items, cursor = page(requests, limit, lambda r: r.id)
        return KycAdminPage(items=items, next_cursor=cursor)

    async def decide(
        self, admin_id: int, kyc_id: int, decision: str, reason: str | None
    ) -> KycAdminView:
        reason = reason.strip() if reason else None
        if decision == "REJECTED" and not reason:
            raise validation_error("a rejection needs a reason")
        async with connection(self._pool) as conn, conn.transaction():
            current = await store.lock_request_status(conn, kyc_id)
            if current is None:
                raise not_found("KYC request")
            if current != "PENDING":
                raise ApiError(409, "invalid_transition", f"the request is already {current}")
            try:
                async with conn.transaction():
                    await store.decide_request(conn, kyc_id, decision, reason, admin_id)
            except asyncpg.UniqueViolationError:
                raise pan_in_use() from None
            request = await store.request_by_id(conn, kyc_id)
            assert request is not None, "a request locked in this transaction is missing"
        logger.bind(kyc_id=kyc_id, admin_id=admin_id).info("KYC decided: {}", decision)
        return request
