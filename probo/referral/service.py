"""Referral rules (SPEC §4): a new, not-yet-referred user applies someone else's code;
in one transaction the referrer is credited, the relation recorded, and the referred
user stops being new. The referred user's row lock makes concurrent submissions credit
once; the engine is told after commit."""

from __future__ import annotations

import asyncpg
from loguru import logger

from probo import ledger
from probo.infra import Settings, connection
from probo.orderbook import EngineMirror, record_credit
from probo.referral.types import Referee, ReferralApplied, ReferralSummary
from probo.web import ApiError

REFERRALS_LISTED_MAX = 1000
CODE_ALPHABET = frozenset("ABCDEFGHJKMNPQRSTUVWXYZ23456789")


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
            if len(code) == 8 and set(code) <= CODE_ALPHABET:
                referrer_id = await conn.fetchval(
                    "SELECT id FROM users WHERE referral_code = $1", code
                )
            # Lock both users in id order: concurrent referrals (A uses B's code while B
            # uses C's, or A and B each other's) then queue instead of deadlocking, and
            # the circular check below sees the other's committed referral. NO KEY
            # UPDATE leaves the foreign-key checks of the insert unblocked.
            locked = await conn.fetch(
                "SELECT id, is_new FROM users WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE",
                [user_id] if referrer_id is None else [user_id, referrer_id],
            )
            me = next((row for row in locked if row["id"] == user_id), None)
            if me is None:
                raise ApiError(401, "unauthorized", "this session's user no longer exists")
            if await conn.fetchval("SELECT 1 FROM referrals WHERE referred_user_id = $1", user_id):
                raise ApiError(409, "already_referred", "a referral code was already applied")
            if not me["is_new"]:
                raise ApiError(409, "not_new", "referral codes apply only before your first trade")
            if referrer_id is None:
                raise invalid_code()
            if referrer_id == user_id:
                raise ApiError(422, "self_referral", "you cannot use your own referral code")
            if await conn.fetchval(
                "SELECT 1 FROM referrals WHERE referred_user_id = $1 AND referrer_user_id = $2",
                referrer_id,
                user_id,
            ):
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
            created_at = await conn.fetchval(
                "INSERT INTO referrals (referred_user_id, referrer_user_id, bonus, transfer_id) "
                "VALUES ($1, $2, $3, $4) RETURNING created_at",
                user_id,
                referrer_id,
                bonus,
                transfer_id,
            )
            await conn.execute("UPDATE users SET is_new = false WHERE id = $1", user_id)
        logger.bind(user_id=user_id, referrer_id=referrer_id).info("referral applied")
        if credits:
            await self._mirror.deliver(credits)
        return ReferralApplied(referrer_id=referrer_id, code=code, created_at=created_at)

    async def summary(self, user_id: int) -> ReferralSummary:
        async with connection(self._pool) as conn:
            code = await conn.fetchval("SELECT referral_code FROM users WHERE id = $1", user_id)
            if code is None:
                raise ApiError(404, "not_found", "user not found")
            rows = await conn.fetch(
                "SELECT referred_user_id, created_at FROM referrals WHERE referrer_user_id = $1 "
                "ORDER BY created_at DESC LIMIT $2",
                user_id,
                REFERRALS_LISTED_MAX,
            )
            totals = await conn.fetchrow(
                "SELECT count(*) AS n, coalesce(sum(bonus), 0)::bigint AS earned FROM referrals WHERE referrer_user_id = $1",
                user_id,
            )
        return ReferralSummary(
            code=code,
            referrals=[
                Referee(user_id=r["referred_user_id"], created_at=r["created_at"]) for r in rows
            ],
            total_earned=totals["earned"],
            referral_count=totals["n"],
        )
