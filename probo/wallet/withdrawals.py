"""Withdrawals (SPEC §11): decided by the engine, paid out by the provider.

The engine decides whether `amount + fee` is available (it knows the locks) and the
ledger writer commits the debit with the withdrawal: the amount to `payouts_pending`,
the fee to `platform_fees`. Above the review threshold the withdrawal then waits for an
admin (`pending`); otherwise, and once approved, its payout goes to the user's verified
bank account (`processing`). The provider's word — its answer, a signed payout webhook,
or the reconciler's status check — ends it once, under the row's lock: `completed`
(`payouts_pending -> platform_bank`), or `failed` / `rejected` (amount and fee go back
to the user as `withdrawal_reversal` transfers, then into the engine like any credit).

A payout is idempotent by our transfer id, so sending it again after a crash or a lost
answer never pays twice; the reconciler sends those never sent and asks about those
never confirmed.
"""

from __future__ import annotations

import asyncpg
from loguru import logger

from probo import kyc, ledger
from probo.infra import Settings, connection, metrics
from probo.ledger import EntryRepeatsKey
from probo.orderbook import (
    Engine,
    EngineCredit,
    EngineMirror,
    Withdraw,
    WithdrawalAccepted,
    WithdrawalDuplicate,
    WithdrawalRejected,
    decided,
    record_credit,
)
from probo.payments import (
    PaymentProvider,
    PayoutEvent,
    PayoutRequest,
    PayoutState,
    ProviderRefused,
    ProviderUnavailable,
)
from probo.wallet import store
from probo.wallet.deposits import idempotency_conflict
from probo.wallet.types import (
    WITHDRAWAL_AMOUNT_MIN,
    AdminWithdrawal,
    AdminWithdrawalPage,
    Withdrawal,
    WithdrawalPage,
    WithdrawalStatus,
)
from probo.web import ApiError, not_found, page, validation_error

PAYOUTS_BATCH_MAX = 100  # withdrawals the reconciler drives per round
# The request that made or approved a payout sends it; after this (or the reconcile
# delay, if shorter) the reconciler sends any it did not.
PAYOUT_UNSENT_GRACE_S = 10.0
TRANSFER_ID_PREFIX = "probo_wd_"


def transfer_id_of(withdrawal_id: int) -> str:
    return f"{TRANSFER_ID_PREFIX}{withdrawal_id}"


def withdrawal_id_of(transfer_id: str) -> int | None:
    digits = transfer_id.removeprefix(TRANSFER_ID_PREFIX)
    if digits == transfer_id or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


def invalid_transition(status: str) -> ApiError:
    return ApiError(409, "invalid_transition", f"the withdrawal is {status}, not pending")


class Withdrawals:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        engine: Engine,
        mirror: EngineMirror,
        provider: PaymentProvider,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._engine = engine
        self._mirror = mirror
        self._provider = provider

    def fee_of(self, amount: int) -> int:
        return amount * self._settings.withdrawal_fee_bps // 10_000

    # --- asking -------------------------------------------------------------------------------

    async def create(
        self, user_id: int, amount: int, idempotency_key: str
    ) -> tuple[Withdrawal, bool]:
        """(the withdrawal, whether this call made it). Raises ApiError."""
        settings = self._settings
        if not WITHDRAWAL_AMOUNT_MIN <= amount <= settings.deposit_amount_max:
            raise validation_error(
                f"amount must be between {WITHDRAWAL_AMOUNT_MIN} and {settings.deposit_amount_max} paise"
            )
        async with connection(self._pool) as conn:
            kyc_status = await kyc.kyc_status_of(conn, user_id)
            # A key's first use is read here: the engine remembers only recent ones.
            original = await store.withdrawal_by_key(conn, user_id, idempotency_key)
        if kyc_status != "VERIFIED":
            raise ApiError(403, "kyc_required", "withdrawals need verified KYC")
        if original is not None:
            return _repeated(original, amount), False
        command = Withdraw(
            user_id,
            amount,
            idempotency_key,
            fee=self.fee_of(amount),
            held_for_review=amount > settings.withdrawal_review_above,
        )
        try:
            entry = await decided(
                self._engine,
                command,
                timeout_s=settings.ack_timeout_ms / 1000,
                unconfirmed="not confirmed in time; it may still complete: retry with the same key",
            )
        except EntryRepeatsKey:  # its first use committed after the read above
            return _repeated(await self._committed(user_id, idempotency_key), amount), False
        event = entry.events[0]
        if type(event) is WithdrawalDuplicate:
            if event.amount != amount:
                raise idempotency_conflict()
            return await self._committed(user_id, idempotency_key), False
        if type(event) is WithdrawalRejected:
            raise ApiError(422, event.code, event.message)
        assert type(event) is WithdrawalAccepted, event
        metrics.PAYOUTS.labels("pending" if event.held_for_review else "processing").inc()
        if not event.held_for_review:
            await self.pay_out(event.withdrawal_id)
        return await self._committed(user_id, idempotency_key), True

    async def _committed(self, user_id: int, idempotency_key: str) -> Withdrawal:
        """The withdrawal under this key, committed before this was asked."""
        async with connection(self._pool) as conn:
            withdrawal = await store.withdrawal_by_key(conn, user_id, idempotency_key)
        assert withdrawal is not None, "an engine-accepted withdrawal is missing after commit"
        return withdrawal

    # --- reading ------------------------------------------------------------------------------

    async def of_user(self, user_id: int, limit: int, before_id: int | None) -> WithdrawalPage:
        async with connection(self._pool) as conn:
            rows = await store.withdrawals_of_user(
                conn, user_id, before_id=before_id, limit=limit + 1
            )
        items, cursor = page(rows, limit, lambda w: w.id)
        return WithdrawalPage(items=items, next_cursor=cursor)

    async def for_admin(
        self, status: WithdrawalStatus | None, limit: int, before_id: int | None
    ) -> AdminWithdrawalPage:
        async with connection(self._pool) as conn:
            rows = await store.admin_withdrawals(conn, status, before_id=before_id, limit=limit + 1)
        items, cursor = page(rows, limit, lambda w: w.id)
        return AdminWithdrawalPage(items=items, next_cursor=cursor)

    # --- an admin's review --------------------------------------------------------------------

    async def decide(
        self, withdrawal_id: int, *, approve: bool, reason: str | None, admin_id: int
    ) -> AdminWithdrawal:
        """Approve (the payout goes out) or reject (the money goes back) a pending one."""
        credits: list[EngineCredit] = []
        async with connection(self._pool) as conn, conn.transaction():
            withdrawal = await store.withdrawal_row(conn, withdrawal_id, lock=True)
            if withdrawal is None:
                raise not_found("withdrawal")
            if withdrawal.status != "pending":
                raise invalid_transition(withdrawal.status)
            if approve:
                await store.decide_withdrawal(conn, withdrawal_id, admin_id, reason)
            else:
                credits = await _returned(conn, withdrawal, "rejected", reason, admin_id)
        metrics.PAYOUTS.labels("processing" if approve else "rejected").inc()
        if credits:
            await self._mirror.deliver(credits)
        if approve:
            await self.pay_out(withdrawal_id)
        async with connection(self._pool) as conn:
            view = await store.admin_withdrawal(conn, withdrawal_id)
        assert view is not None
        return view

    # --- the payout ---------------------------------------------------------------------------

    async def pay_out(self, withdrawal_id: int) -> None:
        """Send the payout of a processing withdrawal to its owner's verified account,
        and settle it if the provider answers with its outcome. A provider that cannot be
        reached leaves it processing, for the reconciler."""
        async with connection(self._pool) as conn:
            withdrawal = await store.withdrawal_row(conn, withdrawal_id)
            if withdrawal is None or withdrawal.status != "processing":
                return
            account = await kyc.verified_request(conn, withdrawal.user_id)
        log = logger.bind(withdrawal_id=withdrawal_id)
        if account is None:
            await self.settle(withdrawal_id, succeeded=False, reason="no verified bank account")
            return
        request = PayoutRequest(
            transfer_id=transfer_id_of(withdrawal_id),
            amount=withdrawal.amount,
            user_id=account.user_id,
            name=account.name,
            bank_account=account.bank_account,
            ifsc=account.ifsc,
        )
        try:
            state = await self._provider.send_payout(request)
        except ProviderUnavailable as exc:
            log.warning("payout not sent, the reconciler will retry: {}", exc)
            return
        except ProviderRefused as exc:
            await self.settle(withdrawal_id, succeeded=False, reason=f"refused: {exc}")
            return
        async with connection(self._pool) as conn:
            await store.mark_payout_requested(
                conn, withdrawal_id, self._provider.name, state.reference
            )
        await self._provider_says(withdrawal_id, state)

    async def _provider_says(self, withdrawal_id: int, state: PayoutState) -> None:
        if state.state == "completed":
            await self.settle(withdrawal_id, succeeded=True, reason=None)
        elif state.state == "failed":
            await self.settle(withdrawal_id, succeeded=False, reason=state.reason or "failed")

    async def settle(self, withdrawal_id: int, *, succeeded: bool, reason: str | None) -> bool:
        """End a processing withdrawal once: completed, or failed with the money back.
        False if it was not processing (settled before)."""
        credits: list[EngineCredit] = []
        async with connection(self._pool) as conn, conn.transaction():
            withdrawal = await store.withdrawal_row(conn, withdrawal_id, lock=True)
            if withdrawal is None or withdrawal.status != "processing":
                return False
            if succeeded:
                await _paid_out(conn, withdrawal)
            else:
                credits = await _returned(conn, withdrawal, "failed", reason, None)
        status = "completed" if succeeded else "failed"
        metrics.PAYOUTS.labels(status).inc()
        logger.bind(withdrawal_id=withdrawal_id).info("withdrawal {}: {}", status, reason or "")
        if credits:
            await self._mirror.deliver(credits)
        return True

    async def payout_reported(self, event: PayoutEvent) -> None:
        """A signed payout webhook."""
        log = logger.bind(transfer_id=event.transfer_id)
        withdrawal_id = withdrawal_id_of(event.transfer_id)
        if withdrawal_id is None:
            metrics.PAYMENT_WEBHOOKS.labels("unknown_transfer").inc()
            log.warning("a payout webhook for a transfer that is not ours; ignored")
            return
        settled = await self.settle(
            withdrawal_id,
            succeeded=event.succeeded,
            reason=None if event.succeeded else event.reason,
        )
        if settled:
            metrics.PAYMENT_WEBHOOKS.labels("completed" if event.succeeded else "failed").inc()
            return
        metrics.PAYMENT_WEBHOOKS.labels("repeat").inc()
        if event.reversed:
            async with connection(self._pool) as conn:
                withdrawal = await store.withdrawal_by_id(conn, withdrawal_id)
            if withdrawal is not None and withdrawal.status == "completed":
                metrics.PAYMENT_MISMATCHES.inc()
                log.error(
                    "the bank returned the payout of completed withdrawal {}: the money is "
                    "back with the platform, not with the user; an operator must act",
                    withdrawal_id,
                )

    async def reconcile(self, every_s: float) -> int:
        """Send payouts never sent and ask about those never confirmed; returns how many."""
        async with connection(self._pool) as conn:
            claimed = await store.payouts_to_drive(
                conn,
                unsent_after_s=min(
                    PAYOUT_UNSENT_GRACE_S, self._settings.payments_reconcile_after_s
                ),
                unconfirmed_after_s=self._settings.payments_reconcile_after_s,
                checked_before_s=every_s,
                limit=PAYOUTS_BATCH_MAX,
            )
        for withdrawal_id, sent in claimed:
            if not sent:
                await self.pay_out(withdrawal_id)
                continue
            try:
                state = await self._provider.payout(transfer_id_of(withdrawal_id))
            except (ProviderUnavailable, ProviderRefused) as exc:
                logger.bind(withdrawal_id=withdrawal_id).warning("reconciler: {}", exc)
                break
            if state is None:  # recorded as sent, unknown to the provider: send it again
                await self.pay_out(withdrawal_id)
            else:
                await self._provider_says(withdrawal_id, state)
        return len(claimed)


async def _paid_out(conn: asyncpg.Connection, withdrawal: store.WithdrawalRow) -> None:
    """The provider paid it: the money leaves the platform for the bank."""
    await ledger.post_transfers(
        conn,
        [
            ledger.Transfer(
                ledger.PAYOUTS_PENDING_ACCOUNT_ID,
                ledger.PLATFORM_BANK_ACCOUNT_ID,
                withdrawal.amount,
                "withdrawal",
                "withdrawal",
                withdrawal.id,
            )
        ],
    )
    await store.close_withdrawal(conn, withdrawal.id, "completed", None)


async def _returned(
    conn: asyncpg.Connection,
    withdrawal: store.WithdrawalRow,
    status: WithdrawalStatus,
    reason: str | None,
    decided_by: int | None,
) -> list[EngineCredit]:
    """Failed or rejected: the amount and the fee back to the user, in the caller's
    transaction; the credits the engine must then be told."""
    account_id = await ledger.open_user_account(conn, withdrawal.user_id)
    returns = [(ledger.PAYOUTS_PENDING_ACCOUNT_ID, withdrawal.amount)]
    if withdrawal.fee:
        returns.append((ledger.PLATFORM_FEES_ACCOUNT_ID, withdrawal.fee))
    transfer_ids = await ledger.post_transfers(
        conn,
        [
            ledger.Transfer(
                source, account_id, amount, "withdrawal_reversal", "withdrawal", withdrawal.id
            )
            for source, amount in returns
        ],
    )
    await store.close_withdrawal(conn, withdrawal.id, status, reason, decided_by=decided_by)
    return [
        await record_credit(conn, "WITHDRAWAL_REVERSAL", transfer_id, withdrawal.user_id, amount)
        for transfer_id, (_, amount) in zip(transfer_ids, returns, strict=True)
    ]


def _repeated(original: Withdrawal, amount: int) -> Withdrawal:
    """The answer to a key used before: its withdrawal, if this one asked the same."""
    if original.amount != amount:
        raise idempotency_conflict()
    return original
