"""Login by phone OTP, sessions, logout, and the caller's profile.

First login creates the user and, in the same transaction, whatever the composition
root hooked in (the wallet and its signup bonus); the hook's after-commit action runs
once the transaction has committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from loguru import logger

from probo.auth import store
from probo.auth.otp import OtpStore
from probo.auth.revocations import RevocationList
from probo.auth.sms import SmsError, SmsProvider
from probo.auth.tokens import Claims, TokenIssuer
from probo.auth.types import LoginResult, Me, OtpSent
from probo.infra import InvalidPhone, Settings, connection, mask_phone, metrics, normalise_phone
from probo.web import ApiError, not_found, redis_required, unavailable, validation_error

AfterCommit = Callable[[], Awaitable[None]]
# Runs inside the sign-up transaction; returns what to do after it commits.
SignupHook = Callable[[asyncpg.Connection, int], Awaitable[AfterCommit | None]]
KycStatusLookup = Callable[[asyncpg.Connection, int], Awaitable[str]]


def parse_phone(raw: str) -> str:
    try:
        return normalise_phone(raw)
    except InvalidPhone as exc:
        raise validation_error(str(exc)) from None


def otp_message(otp: str, ttl_s: int) -> str:
    return f"{otp} is your Probo login code. It expires in {ttl_s // 60} minutes. Never share it."


class AuthService:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        otp_store: OtpStore,
        sms: SmsProvider,
        tokens: TokenIssuer,
        revocations: RevocationList,
        on_signup: SignupHook,
        kyc_status_of: KycStatusLookup,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._otp = otp_store
        self._sms = sms
        self.tokens = tokens
        self.revocations = revocations
        self._on_signup = on_signup
        self._kyc_status_of = kyc_status_of

    async def request_otp(self, raw_phone: str, ip: str) -> OtpSent:
        phone = parse_phone(raw_phone)
        with redis_required("login"):
            otp = await self._otp.issue(phone, ip)
            try:
                await self._sms.send(phone, otp_message(otp, self._settings.otp_ttl_s), otp)
            except SmsError as exc:
                logger.bind(phone=mask_phone(phone)).error("OTP SMS not sent: {}", exc)
                await self._otp.discard(phone)
                raise unavailable(
                    "the code could not be sent; try again shortly", retry_after_s=5
                ) from None
        metrics.OTP_SENT.labels(self._settings.sms_provider).inc()
        return OtpSent(
            phone=phone,
            expires_in=self._settings.otp_ttl_s,
            resend_after=self._settings.otp_resend_cooldown_s,
        )

    async def verify(self, raw_phone: str, otp: str, ip: str) -> LoginResult:
        phone = parse_phone(raw_phone)
        with redis_required("login"):
            try:
                await self._otp.verify(phone, otp, ip)
            except ApiError as exc:
                metrics.OTP_VERIFY.labels(exc.code).inc()
                raise
        metrics.OTP_VERIFY.labels("ok").inc()
        role = "admin" if phone in self._settings.admin_phones else "user"
        user, after_commit = await self._login(phone, role)
        if after_commit is not None:
            await after_commit()
        token, claims = self.tokens.issue(user["id"], role)
        async with connection(self._pool) as conn:
            kyc_status = await self._kyc_status_of(conn, user["id"])
        return LoginResult(token=token, expires_at=claims.expires_at, user=_me(user, kyc_status))

    async def _login(self, phone: str, role: str) -> tuple[asyncpg.Record, AfterCommit | None]:
        async with connection(self._pool) as conn, conn.transaction():
            created = await store.insert_user_if_new(conn, phone, role)
            if created is None:
                return await store.touch_login(conn, phone, role), None
            logger.bind(user_id=created["id"]).info("user signed up")
            return created, await self._on_signup(conn, created["id"])

    async def logout(self, claims: Claims) -> None:
        await self.revocations.revoke(claims.jti, claims.user_id, claims.expires_at)

    async def me(self, user_id: int) -> Me:
        async with connection(self._pool) as conn:
            user = await store.user_by_id(conn, user_id)
            if user is None:
                raise not_found("user")
            return _me(user, await self._kyc_status_of(conn, user_id))


def _me(user: asyncpg.Record, kyc_status: str) -> Me:
    return Me(
        id=user["id"],
        phone=user["phone"],
        referral_code=user["referral_code"],
        is_new=user["is_new"],
        kyc_status=kyc_status,  # type: ignore[arg-type]
        role=user["role"],
        created_at=user["created_at"],
    )
