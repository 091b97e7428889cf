"""Wallet use cases: opening a wallet with its signup bonus, balances, history,
deposits and withdrawals.

Withdrawals are debits, so the engine decides them against available funds (it knows
the locks) and the ledger writer persists them in order; a repeated key returns the
first withdrawal once it has committed.

Deposits are idempotent per (user, key). In this process a duplicate that arrives while
the first is in flight waits for it and gets the same result. Across processes or after
a crash, the row in `deposits` is the arbiter: a pending deposit is re-driven (the
gateway is idempotent by key) and completed under a row lock, so it credits once.
"""

from __future__ import annotations

import asyncio

import asyncpg
from loguru import logger

from probo import ledger
from probo.auth import AfterCommit
from probo.infra import Settings, connection, metrics
from probo.kyc import kyc_status_of
from probo.ledger import EntryRepeatsKey
from probo.orderbook import (
    Engine,
    EngineMirror,
    Withdraw,
    WithdrawalAccepted,
    WithdrawalDuplicate,
    WithdrawalRejected,
    decided,
    record_credit,
)
from probo.wallet import store
from probo.wallet.gateway import ChargeResult, GatewayUnavailable, PaymentGateway
from probo.wallet.types import (
    WITHDRAWAL_AMOUNT_MIN,
    Deposit,
    TransactionPage,
    Wallet,
    WalletTransaction,
    Withdrawal,
)
from probo.web import ApiError, page, unavailable, validation_error

DEPOSITS_IN_FLIGHT_MAX = 10_000


def idempotency_conflict() -> ApiError:
    return ApiError(
        409, "idempotency_conflict", "this idempotency key was used with a different request"
    )


class WalletService:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        engine: Engine,
        mirror: EngineMirror,
        gateway: PaymentGateway,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._engine = engine
        self._mirror = mirror
        self._gateway = gateway
        # (user id, key) -> (amount, outcome of the deposit being processed)
        self._in_flight: dict[
            tuple[int, str], tuple[int, asyncio.Future[tuple[Deposit, bool]]]
        ] = {}

    async def open_wallet(self, conn: asyncpg.Connection, user_id: int) -> AfterCommit:
        """Sign-up hook: the cash account and the signup bonus, in the caller's transaction."""
        account_id = await ledger.open_user_account(conn, user_id)
        credits = []
        bonus = self._settings.signup_bonus
        if bonus > 0:
            [transfer_id] = await ledger.post_transfers(
                conn,
                [
                    ledger.Transfer(
                        ledger.PLATFORM_BONUS_ACCOUNT_ID,
                        account_id,
                        bonus,
                        "signup_bonus",
                        "user",
                        user_id,
                    )
                ],
            )
            credits.append(await record_credit(conn, "INIT_BALANCE", transfer_id, user_id, bonus))

        async def tell_engine() -> None:
            await self._mirror.deliver(credits, new_user_id=user_id)

        return tell_engine

    async def wallet(self, user_id: int) -> Wallet:
        """As committed: the ledger balance, and what the user's open buys hold."""
        async with connection(self._pool) as conn:
            balance, locked = await store.balance_and_locked(conn, user_id)
        return Wallet(balance=balance, locked=locked, available=balance - locked)

    async def transactions(
        self, user_id: int, limit: int, before_id: int | None
    ) -> TransactionPage:
        async with connection(self._pool) as conn:
            account_id = await ledger.user_account_id(conn, user_id)
            if account_id is None:
                return TransactionPage(items=[], next_cursor=None)
            rows = await ledger.user_transfers(
                conn, account_id, before_id=before_id, limit=limit + 1
            )
        rows, cursor = page(rows, limit, lambda r: r["id"])
        items = [
            WalletTransaction(
                id=r["id"],
                kind=r["kind"],
                amount=r["amount"],
                ref=f"{r['ref_type']}:{r['ref_id']}",
                created_at=r["created_at"],
            )
            for r in rows
        ]
        return TransactionPage(items=items, next_cursor=cursor)

    async def deposit(
        self, user_id: int, amount: int, idempotency_key: str
    ) -> tuple[Deposit, bool]:
        """(the deposit, whether this call created it). Raises ApiError."""
        settings = self._settings
        if not settings.deposit_amount_min <= amount <= settings.deposit_amount_max:
            raise validation_error(
                f"amount must be between {settings.deposit_amount_min} and {settings.deposit_amount_max} paise"
            )
        flight_key = (user_id, idempotency_key)
        in_flight = self._in_flight.get(flight_key)
        if in_flight is not None:
            first_amount, outcome = in_flight
            if first_amount != amount:
                raise idempotency_conflict()
            deposit, _ = await asyncio.shield(outcome)
            return deposit, False
        if len(self._in_flight) >= DEPOSITS_IN_FLIGHT_MAX:
            raise unavailable("too many deposits in progress", retry_after_s=1)

        outcome: asyncio.Future[tuple[Deposit, bool]] = asyncio.get_running_loop().create_future()
        # Waiters read the outcome; mark an exception retrieved even if nobody waits.
        outcome.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._in_flight[flight_key] = (amount, outcome)
        try:
            result = await self._deposit(user_id, amount, idempotency_key)
        except BaseException as exc:
            outcome.set_exception(exc)
            raise
        else:
            outcome.set_result(result)
            return result
        finally:
            del self._in_flight[flight_key]

    async def _deposit(
        self, user_id: int, amount: int, idempotency_key: str
    ) -> tuple[Deposit, bool]:
        deposit, created = await self._open_deposit(user_id, amount, idempotency_key)
        if deposit.status != "pending":
            return self._outcome(deposit, created=False)
        # No connection is held while the gateway works: a slow gateway must not starve
        # every other request of the pool.
        try:
            charge = await self._gateway.charge(
                user_id=user_id, amount=amount, idempotency_key=idempotency_key
            )
        except GatewayUnavailable:
            metrics.DEPOSITS.labels("gateway_unavailable").inc()
            raise unavailable(
                "the payment gateway is unavailable; retry with the same key", 5
            ) from None
        async with connection(self._pool) as conn:
            deposit, credits = await self._complete(conn, deposit.id, user_id, charge)
        if credits:
            await self._mirror.deliver(credits)
        metrics.DEPOSITS.labels(deposit.status).inc()
        return self._outcome(deposit, created=created)

    async def _open_deposit(
        self, user_id: int, amount: int, idempotency_key: str
    ) -> tuple[Deposit, bool]:
        """The deposit for this key, created pending if new; (deposit, created)."""
        async with connection(self._pool) as conn:
            deposit = await store.insert_deposit_if_new(
                conn, user_id, idempotency_key, amount, self._gateway.name
            )
            if deposit is not None:
                return deposit, True
            deposit = await store.deposit_by_key(conn, user_id, idempotency_key)
        assert deposit is not None
        if deposit.amount != amount:
            raise idempotency_conflict()
        if deposit.status == "pending":
            logger.bind(deposit_id=deposit.id).warning("re-driving a pending deposit")
        return deposit, False

    async def _complete(
        self, conn: asyncpg.Connection, deposit_id: int, user_id: int, charge: ChargeResult
    ) -> tuple[Deposit, list]:
        """Record the gateway's outcome once; on success credit the user in the same transaction."""
        async with conn.transaction():
            deposit = await store.lock_deposit(conn, deposit_id)
            if deposit.status != "pending":  # another request completed it first
                return deposit, []
            if not charge.succeeded:
                deposit = await store.mark_deposit_failed(
                    conn, deposit_id, charge.reference, charge.failure_reason or "declined"
                )
                return deposit, []
            account_id = await ledger.open_user_account(conn, user_id)
            [transfer_id] = await ledger.post_transfers(
                conn,
                [
                    ledger.Transfer(
                        ledger.PLATFORM_BANK_ACCOUNT_ID,
                        account_id,
                        deposit.amount,
                        "deposit",
                        "deposit",
                        deposit_id,
                    )
                ],
            )
            deposit = await store.mark_deposit_succeeded(
                conn, deposit_id, charge.reference, transfer_id
            )
            credit = await record_credit(conn, "DEPOSIT", transfer_id, user_id, deposit.amount)
        return deposit, [credit]

    @staticmethod
    def _outcome(deposit: Deposit, *, created: bool) -> tuple[Deposit, bool]:
        if deposit.status == "failed":
            raise ApiError(
                402,
                "payment_failed",
                f"the payment was declined: {deposit.failure_reason}",
                details={"deposit": {"id": deposit.id, "status": "failed"}},
            )
        return deposit, created

    async def withdraw(
        self, user_id: int, amount: int, idempotency_key: str
    ) -> tuple[Withdrawal, bool]:
        """(the withdrawal, whether this call made it). Raises ApiError."""
        settings = self._settings
        if not WITHDRAWAL_AMOUNT_MIN <= amount <= settings.deposit_amount_max:
            raise validation_error(
                f"amount must be between {WITHDRAWAL_AMOUNT_MIN} and {settings.deposit_amount_max} paise"
            )
        async with connection(self._pool) as conn:
            kyc_status = await kyc_status_of(conn, user_id)
            # A key's first use is read here: the engine remembers only recent ones.
            original = await store.withdrawal_by_key(conn, user_id, idempotency_key)
        if kyc_status != "VERIFIED":
            raise ApiError(403, "kyc_required", "withdrawals need verified KYC")
        if original is not None:
            return _repeated(original, amount), False
        try:
            entry = await decided(
                self._engine,
                Withdraw(user_id, amount, idempotency_key),
                timeout_s=settings.ack_timeout_ms / 1000,
                unconfirmed="not confirmed in time; it may still complete: retry with the same key",
            )
        except EntryRepeatsKey:  # its first use committed after the read above
            return _repeated(
                await self._committed_withdrawal(user_id, idempotency_key), amount
            ), False
        event = entry.events[0]
        if type(event) is WithdrawalDuplicate:
            if event.amount != amount:
                raise idempotency_conflict()
            return await self._committed_withdrawal(user_id, idempotency_key), False
        if type(event) is WithdrawalRejected:
            raise ApiError(422, event.code, event.message)
        assert type(event) is WithdrawalAccepted, event
        withdrawal = Withdrawal(
            id=event.withdrawal_id,
            amount=amount,
            status="completed",
            idempotency_key=idempotency_key,
            created_at=entry.at,
        )
        return withdrawal, True

    async def _committed_withdrawal(self, user_id: int, idempotency_key: str) -> Withdrawal:
        """The first withdrawal under this key: committed before its duplicate was answered."""
        async with connection(self._pool) as conn:
            withdrawal = await store.withdrawal_by_key(conn, user_id, idempotency_key)
        assert withdrawal is not None, (
            "an engine-accepted withdrawal is missing after its duplicate committed"
        )
        return withdrawal


def _repeated(original: Withdrawal, amount: int) -> Withdrawal:
    """The answer to a key used before: its withdrawal, if this one asked the same."""
    if original.amount != amount:
        raise idempotency_conflict()
    return original
