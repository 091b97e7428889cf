"""Login by phone OTP, sessions, logout, the caller's profile, and suspension.

First login creates the user and, in the same transaction, whatever the composition
root hooked in (the wallet and its signup bonus); the hook's after-commit action runs
once the transaction has committed.

Every login is a row of `sessions`, named by its token's `jti`. Revoking sessions
(logout, one session, all of them, a refresh's old token, a suspension) marks the rows
and records the revocations in one transaction, then announces them through the
revocation list, which every request, and every live user channel, checks in memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
from loguru import logger

from probo.auth import store
from probo.auth.otp import OtpStore
from probo.auth.revocations import RevocationList
from probo.auth.sessions import SessionActivity
from probo.auth.sms import SmsError, SmsProvider
from probo.auth.tokens import Claims, TokenIssuer
from probo.auth.types import LoginResult, Me, OtpSent, Session, SessionPage
from probo.infra import InvalidPhone, Settings, connection, mask_phone, metrics, normalise_phone
from probo.web import (
    ApiError,
    not_found,
    page,
    redis_required,
    unauthorized,
    unavailable,
    validation_error,
)

AfterCommit = Callable[[], Awaitable[None]]
# Runs inside the sign-up transaction; returns what to do after it commits.
SignupHook = Callable[[asyncpg.Connection, int], Awaitable[AfterCommit | None]]
KycStatusLookup = Callable[[asyncpg.Connection, int], Awaitable[str]]
USER_AGENT_LENGTH_MAX = 512


def suspended() -> ApiError:
    return ApiError(403, "suspended", "this account is suspended")


def storable_user_agent(raw: str | None) -> str:
    """The User-Agent as a session shows it: cut short, and storable in Postgres."""
    return (raw or "")[:USER_AGENT_LENGTH_MAX].replace("\x00", "")


def _at(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


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
        self.activity = SessionActivity(pool)

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

    async def verify(
        self, raw_phone: str, otp: str, ip: str, user_agent: str | None = None
    ) -> LoginResult:
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
        if user["suspended"]:
            raise suspended()
        token, claims = self.tokens.issue(user["id"], role)
        async with connection(self._pool) as conn:
            await store.insert_session(
                conn,
                user["id"],
                claims.jti,
                storable_user_agent(user_agent),
                _at(claims.expires_at),
            )
            kyc_status = await self._kyc_status_of(conn, user["id"])
        self.activity.started(claims.jti)
        return LoginResult(token=token, expires_at=claims.expires_at, user=_me(user, kyc_status))

    async def _login(self, phone: str, role: str) -> tuple[asyncpg.Record, AfterCommit | None]:
        async with connection(self._pool) as conn, conn.transaction():
            created = await store.insert_user_if_new(conn, phone, role)
            if created is None:
                return await store.touch_login(conn, phone, role), None
            logger.bind(user_id=created["id"]).info("user signed up")
            return created, await self._on_signup(conn, created["id"])

    async def sign_up(self, raw_phone: str) -> int:
        """The id of the user with this phone, created as a first login creates one (the
        sign-up hook, the bonus, the engine told) if new; no session. For accounts the
        server itself runs: the demo's bots."""
        phone = parse_phone(raw_phone)
        role = "admin" if phone in self._settings.admin_phones else "user"
        async with connection(self._pool) as conn:
            user_id = await store.user_id_by_phone(conn, phone)
        if user_id is not None:
            return user_id
        async with connection(self._pool) as conn, conn.transaction():
            created = await store.insert_user_if_new(conn, phone, role)
            if created is None:  # signed up meanwhile by a login
                user_id = await store.user_id_by_phone(conn, phone)
                assert user_id is not None
                return user_id
            logger.bind(user_id=created["id"]).info("user signed up by the server")
            after_commit = await self._on_signup(conn, created["id"])
        if after_commit is not None:
            await after_commit()
        return created["id"]

    async def logout(self, claims: Claims) -> None:
        """Revoke this session (a token from before sessions were kept has no row)."""
        async with connection(self._pool) as conn, conn.transaction():
            await store.revoke_session_by_jti(conn, claims.jti)
            await store.insert_revocations(
                conn, claims.user_id, [(claims.jti, _at(claims.expires_at))]
            )
        await self.revocations.announce(claims.jti, claims.expires_at)

    # --- sessions ------------------------------------------------------------------------

    async def sessions(self, claims: Claims, limit: int, before_id: int | None) -> SessionPage:
        async with connection(self._pool) as conn:
            rows = await store.live_sessions(
                conn, claims.user_id, before_id=before_id, limit=limit + 1
            )
        rows, cursor = page(rows, limit, lambda r: r["id"])
        items = [
            Session(
                id=r["id"],
                created_at=r["created_at"],
                last_seen_at=r["last_seen_at"],
                user_agent=r["user_agent"],
                current=r["jti"] == claims.jti,
            )
            for r in rows
        ]
        return SessionPage(items=items, next_cursor=cursor)

    async def revoke_session(self, user_id: int, session_id: int) -> str:
        """Revoke one live session of the user: its jti. Raises ApiError 404 for another
        user's, an unknown, a revoked or an expired session."""
        async with connection(self._pool) as conn, conn.transaction():
            row = await store.revoke_session(conn, user_id, session_id)
            if row is None:
                raise not_found("session")
            await store.insert_revocations(conn, user_id, [(row["jti"], row["expires_at"])])
        await self.revocations.announce(row["jti"], int(row["expires_at"].timestamp()))
        return row["jti"]

    async def revoke_all_sessions(self, user_id: int, also: Claims | None = None) -> int:
        """Revoke every live session of the user (and `also`, the caller's token, which
        may predate session rows); returns how many sessions."""
        async with connection(self._pool) as conn, conn.transaction():
            rows = await store.revoke_user_sessions(conn, user_id)
            revoked = [(r["jti"], r["expires_at"]) for r in rows]
            if also is not None and all(jti != also.jti for jti, _ in revoked):
                revoked.append((also.jti, _at(also.expires_at)))
            if revoked:
                await store.insert_revocations(conn, user_id, revoked)
        for jti, expires_at in revoked:
            await self.revocations.announce(jti, int(expires_at.timestamp()))
        return len(rows)

    async def refresh(self, claims: Claims, user_agent: str | None) -> LoginResult:
        """A new token for this session, the old one revoked. The role is the old token's
        (a login reads PROBO_ADMIN_PHONES again)."""
        token, fresh = self.tokens.issue(claims.user_id, claims.role)
        agent = storable_user_agent(user_agent)
        async with connection(self._pool) as conn:
            async with conn.transaction():
                user = await store.lock_user(conn, claims.user_id)
                if user is None:
                    raise unauthorized("this session's user no longer exists")
                if user["suspended"]:
                    raise suspended()
                # The old token is revoked first: of concurrent refreshes (or a refresh
                # racing a revocation another process has not announced yet) one wins.
                if not await store.claim_revocation(
                    conn, claims.jti, claims.user_id, _at(claims.expires_at)
                ):
                    raise unauthorized("this session has been logged out")
                moved = await store.move_session(
                    conn, claims.jti, fresh.jti, agent, _at(fresh.expires_at)
                )
                if moved is None:
                    # A token from before sessions were kept: it gets its row now.
                    await store.insert_session(
                        conn, claims.user_id, fresh.jti, agent, _at(fresh.expires_at)
                    )
            kyc_status = await self._kyc_status_of(conn, claims.user_id)
        await self.revocations.announce(claims.jti, claims.expires_at)
        self.activity.forget(claims.jti)
        self.activity.started(fresh.jti)
        return LoginResult(token=token, expires_at=fresh.expires_at, user=_me(user, kyc_status))

    # --- profile and suspension ----------------------------------------------------------

    async def set_display_name(self, user_id: int, display_name: str) -> Me:
        """Raises ApiError 409 `display_name_taken` if another user has it, in any case."""
        async with connection(self._pool) as conn:
            try:
                user = await store.set_display_name(conn, user_id, display_name)
            except asyncpg.UniqueViolationError:
                raise ApiError(
                    409, "display_name_taken", "another user has this display name"
                ) from None
            if user is None:
                raise not_found("user")
            return _me(user, await self._kyc_status_of(conn, user_id))

    async def set_suspended(self, user_id: int, suspend: bool, *, admin_id: int) -> None:
        """Suspend the user (their every session revoked) or lift it. Raises ApiError 404
        for no such user, 409 `cannot_suspend_admin` for an admin (the caller included)."""
        async with connection(self._pool) as conn, conn.transaction():
            user = await store.lock_user(conn, user_id)
            if user is None:
                raise not_found("user")
            if suspend and (user["role"] == "admin" or user_id == admin_id):
                raise ApiError(409, "cannot_suspend_admin", "admins cannot be suspended")
            await store.set_suspended(conn, user_id, suspend)
        # In memory first: from here no request of the user passes (any token).
        await self.revocations.announce_suspension(user_id, suspend)
        if suspend:
            await self.revoke_all_sessions(user_id)
            logger.bind(user_id=user_id, admin_id=admin_id).info("user suspended")
        else:
            logger.bind(user_id=user_id, admin_id=admin_id).info("suspension lifted")

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
        display_name=user["display_name"],
    )
