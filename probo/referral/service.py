"""Referral rules (SPEC §4): a new, not-yet-referred user applies someone else's code;
in one transaction the referrer is credited, the relation recorded, and the referred
user stops being new. The referred user's row lock makes concurrent submissions credit
once; the engine is told after commit."""

from __future__ import annotations

import asyncpg
from loguru import logger

from probo import ledger
from probo.auth import is_referral_code
from probo.infra import Settings, connection
from probo.orderbook import EngineMirror, record_credit
from probo.referral import store
from probo.referral.types import ReferralApplied, ReferralSummary
from probo.web import ApiError

REFERRALS_LISTED_MAX = 1000


def invalid_code() -> ApiError:
    return ApiError(422, "invalid_referral_code", "no user has this referral code")


class ReferralService:
    def __init__(self, *, settings: Settings, pool: asyncpg.Pool, mirror: EngineMirror) -> None:
        self._settings = settings
        self._pool = pool
        self._mirror = mirror

    async def apply(self, user_id: int, raw_code: str) -> ReferralApplied:
        code = raw_code.strip().upper()
        credits = []
        async with connection(self._pool) as conn, conn.transaction():
            referrer_id = None
            if is_referral_code(code):
                referrer_id = await store.user_id_by_referral_code(conn, code)
            # Lock both users in id order: concurrent referrals (A uses B's code while B
            # uses C's, or A and B each other's) then queue instead of deadlocking, and
            # the circular check below sees the other's committed referral.
            locked = await store.lock_users(
                conn, [user_id] if referrer_id is None else [user_id, referrer_id]
            )
            me = next((row for row in locked if row["id"] == user_id), None)
            if me is None:
                raise ApiError(401, "unauthorized", "this session's user no longer exists")
            if await store.was_referred(conn, user_id):
                raise ApiError(409, "already_referred", "a referral code was already applied")
            if not me["is_new"]:
                raise ApiError(409, "not_new", "referral codes apply only before your first trade")
            if referrer_id is None:
                raise invalid_code()
            if referrer_id == user_id:
                raise ApiError(422, "self_referral", "you cannot use your own referral code")
            if await store.was_referred_by(conn, referrer_id, user_id):
                # Two users referring each other would farm both bonuses.
                raise ApiError(422, "circular_referral", "this user joined with your referral code")
            bonus = self._settings.referral_bonus
            transfer_id = None
            if bonus > 0:
                account_id = await ledger.open_user_account(conn, referrer_id)
                [transfer_id] = await ledger.post_transfers(
                    conn,
                    [
                        ledger.Transfer(
                            ledger.PLATFORM_BONUS_ACCOUNT_ID,
                            account_id,
                            bonus,
                            "referral_bonus",
                            "user",
                            user_id,
                        )
                    ],
                )
                credits.append(
                    await record_credit(conn, "REFERRAL_CREDIT", transfer_id, referrer_id, bonus)
                )
            created_at = await store.insert_referral(conn, user_id, referrer_id, bonus, transfer_id)
            await store.mark_not_new(conn, user_id)
        logger.bind(user_id=user_id, referrer_id=referrer_id).info("referral applied")
        if credits:
            await self._mirror.deliver(credits)
        return ReferralApplied(referrer_id=referrer_id, code=code, created_at=created_at)

    async def summary(self, user_id: int) -> ReferralSummary:
        async with connection(self._pool) as conn:
            code = await store.referral_code_of(conn, user_id)
            if code is None:
                raise ApiError(404, "not_found", "user not found")
            referees = await store.referees(conn, user_id, REFERRALS_LISTED_MAX)
            referral_count, total_earned = await store.referral_totals(conn, user_id)
        return ReferralSummary(
            code=code,
            referrals=referees,
            total_earned=total_earned,
            referral_count=referral_count,
        )
