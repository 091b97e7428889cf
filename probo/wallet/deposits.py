"""Deposits (SPEC §11): a provider order per deposit, credited once when the provider
confirms the payment — by its signed webhook or, when none comes, by the reconciler's
status check — and never before.

Creating one asks the provider first and records the deposit only with the provider's
order in hand: a provider that cannot be reached leaves nothing pending behind. The
order id is derived from (user, idempotency key), so a retry reaches the same order.

Every outcome is decided under the deposit's row lock: concurrent webhooks, retries and
the reconciler credit at most once, and a payment whose amount or currency differs from
what was asked credits nothing and waits for an operator (`review`). With the simulated
provider the order is paid the moment it opens, and the deposit completes at once.
"""

from __future__ import annotations

import asyncio
import hashlib
from decimal import Decimal

import asyncpg
from loguru import logger

from probo import auth, ledger
from probo.infra import Settings, connection, metrics, public_url
from probo.orderbook import EngineCredit, EngineMirror, record_credit
from probo.payments import (
    CURRENCY,
    OrderRequest,
    PaymentEvent,
    PaymentProvider,
    ProviderOrder,
    ProviderRefused,
    ProviderUnavailable,
    paise_of,
)
from probo.wallet import store
from probo.wallet.types import Deposit, DepositPage
from probo.web import ApiError, not_found, page, unauthorized, unavailable, validation_error

DEPOSITS_IN_FLIGHT_MAX = 10_000
RECONCILE_BATCH_MAX = 100  # pending deposits checked with the provider per round
WEBHOOK_PATH = "/api/v1/payments/cashfree/webhook"


def idempotency_conflict() -> ApiError:
    return ApiError(
        409, "idempotency_conflict", "this idempotency key was used with a different request"
    )


def order_id_for(user_id: int, idempotency_key: str) -> str:
    """The provider order of (user, key): the same on every retry, at most 45
    characters of [A-Za-z0-9_] as Cashfree takes them."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"probo_{user_id}_{digest[:24]}"


class Deposits:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        mirror: EngineMirror,
        provider: PaymentProvider,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._mirror = mirror
        self._provider = provider
        # (user id, key) -> (amount, outcome of the deposit being created)
        self._in_flight: dict[
            tuple[int, str], tuple[int, asyncio.Future[tuple[Deposit, bool]]]
        ] = {}

    # --- creating -------------------------------------------------------------------------

    async def create(self, user_id: int, amount: int, idempotency_key: str) -> tuple[Deposit, bool]:
        """(the deposit, whether this call created it). Raises ApiError."""
        settings = self._settings
        if not settings.deposit_amount_min <= amount <= settings.deposit_amount_max:
            raise validation_error(
                f"amount must be between {settings.deposit_amount_min} and {settings.deposit_amount_max} paise"
            )
        flight_key = (user_id, idempotency_key)
        in_flight = self._in_flight.get(flight_key)
        if in_flight is not None:  # a duplicate of a request still in flight: its answer
            first_amount, first_outcome = in_flight
            if first_amount != amount:
                raise idempotency_conflict()
            deposit, _ = await asyncio.shield(first_outcome)
            return deposit, False
        if len(self._in_flight) >= DEPOSITS_IN_FLIGHT_MAX:
            raise unavailable("too many deposits in progress", retry_after_s=1)
        outcome: asyncio.Future[tuple[Deposit, bool]] = asyncio.get_running_loop().create_future()
        # Waiters read the outcome; mark an exception retrieved even if nobody waits.
        outcome.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._in_flight[flight_key] = (amount, outcome)
        try:
            result = await self._create(user_id, amount, idempotency_key)
        except BaseException as exc:
            outcome.set_exception(exc)
            raise
        else:
            outcome.set_result(result)
            return result
        finally:
            del self._in_flight[flight_key]

    async def _create(
        self, user_id: int, amount: int, idempotency_key: str
    ) -> tuple[Deposit, bool]:
        async with connection(self._pool) as conn:
            known = await store.deposit_by_key(conn, user_id, idempotency_key)
            phone = await auth.phone_of(conn, user_id)
        if known is not None:
            return _repeated(known, amount), False
        if phone is None:  # a token outliving its user (a database restored from backup)
            raise unauthorized("no such user")
        order = await self._opened_order(user_id, amount, idempotency_key, phone)
        if order.amount not in (None, amount):  # the key's order was opened for another amount
            raise idempotency_conflict()
        credits: list[EngineCredit] = []
        async with connection(self._pool) as conn, conn.transaction():
            deposit = await store.insert_deposit_if_new(
                conn,
                user_id=user_id,
                idempotency_key=idempotency_key,
                amount=amount,
                provider=self._provider.name,
                order_id=order.order_id,
                payment_session_id=order.payment_session_id,
            )
            if deposit is None:  # another process recorded it first
                known = await store.deposit_by_key(conn, user_id, idempotency_key)
                assert known is not None
                return _repeated(known, amount), False
            if order.state == "paid":
                deposit, credits = await _credit(conn, user_id, deposit, None)
            elif order.state == "failed":
                deposit = await store.close_deposit(
                    conn, deposit.id, "failed", order.reason or "declined", None
                )
        if credits:
            await self._mirror.deliver(credits)
        metrics.DEPOSITS.labels(deposit.status).inc()
        return deposit, True

    async def _opened_order(
        self, user_id: int, amount: int, idempotency_key: str, phone: str
    ) -> ProviderOrder:
        base = public_url(self._settings)
        order_id = order_id_for(user_id, idempotency_key)
        request = OrderRequest(
            order_id=order_id,
            amount=amount,
            user_id=user_id,
            phone=phone,
            notify_url=base + WEBHOOK_PATH,
            return_url=f"{base}/wallet?order_id={{order_id}}",
        )
        try:
            return await self._provider.open_order(request)
        except (ProviderUnavailable, ProviderRefused) as exc:
            metrics.DEPOSITS.labels("provider_unavailable").inc()
            logger.bind(order_id=order_id).warning("deposit not opened: {}", exc)
            raise unavailable(
                "the payment provider is unavailable; retry with the same key", 5
            ) from None

    # --- reading --------------------------------------------------------------------------

    async def of_user(self, user_id: int, limit: int, before_id: int | None) -> DepositPage:
        async with connection(self._pool) as conn:
            rows = await store.deposits_of_user(conn, user_id, before_id=before_id, limit=limit + 1)
        items, cursor = page(rows, limit, lambda d: d.id)
        return DepositPage(items=items, next_cursor=cursor)

    async def one(self, user_id: int, deposit_id: int) -> Deposit:
        async with connection(self._pool) as conn:
            deposit = await store.deposit_of_user(conn, user_id, deposit_id)
        if deposit is None:
            raise not_found("deposit")
        return deposit

    # --- the provider's word --------------------------------------------------------------

    async def payment_reported(self, event: PaymentEvent) -> None:
        """A signed payment webhook: settle the deposit of its order once."""
        log = logger.bind(order_id=event.order_id, payment_id=event.payment_id)
        paise = paise_of(event.amount)
        credits: list[EngineCredit] = []
        async with connection(self._pool) as conn, conn.transaction():
            found = await store.lock_deposit_of_order(conn, self._provider.name, event.order_id)
            if found is None:
                metrics.PAYMENT_WEBHOOKS.labels("unknown_order").inc()
                log.warning("a payment webhook for an order that is not ours; ignored")
                return
            user_id, deposit = found
            if not event.succeeded:
                outcome = await _payment_failed(conn, deposit, event)
            elif deposit.status in ("completed", "review"):
                outcome = _paid_again(deposit, event)
            elif paise != deposit.amount or event.currency != CURRENCY:
                await _under_review(conn, deposit, event.payment_id, event.amount, event.currency)
                outcome = "review"
            else:
                deposit, credits = await _credit(conn, user_id, deposit, event.payment_id)
                outcome = "completed"
        metrics.PAYMENT_WEBHOOKS.labels(outcome).inc()
        if outcome in ("completed", "failed", "review"):
            metrics.DEPOSITS.labels(outcome).inc()
        if credits:
            await self._mirror.deliver(credits)

    async def reconcile(self, every_s: float) -> int:
        """Ask the provider about deposits pending longer than the webhook should take;
        settle those it has settled. Returns how many it looked at."""
        async with connection(self._pool) as conn:
            order_ids = await store.pending_orders_to_check(
                conn,
                self._provider.name,
                older_than_s=self._settings.payments_reconcile_after_s,
                checked_before_s=every_s,
                limit=RECONCILE_BATCH_MAX,
            )
        for order_id in order_ids:
            try:
                order = await self._provider.order(order_id)
            except (ProviderUnavailable, ProviderRefused) as exc:
                logger.bind(order_id=order_id).warning("reconciler: {}", exc)
                return len(order_ids)  # try again next round
            await self._order_reported(order_id, order)
        return len(order_ids)

    async def _order_reported(self, order_id: str, order: ProviderOrder | None) -> None:
        """The reconciler's answer for one pending deposit."""
        credits: list[EngineCredit] = []
        async with connection(self._pool) as conn, conn.transaction():
            found = await store.lock_deposit_of_order(conn, self._provider.name, order_id)
            if found is None or found[1].status != "pending":
                return  # settled meanwhile (a webhook came after all)
            user_id, deposit = found
            if order is None or order.state == "failed":
                reason = "the provider has no such order" if order is None else order.reason
                deposit = await store.close_deposit(
                    conn, deposit.id, "failed", reason or "failed", None
                )
            elif order.state != "paid":
                return  # still waiting for the payer
            elif order.amount not in (None, deposit.amount) or order.currency != CURRENCY:
                paid = Decimal(order.amount or deposit.amount).scaleb(-2)
                deposit = await _under_review(conn, deposit, None, paid, order.currency)
            else:
                deposit, credits = await _credit(conn, user_id, deposit, None)
        metrics.DEPOSITS.labels(deposit.status).inc()
        metrics.DEPOSITS_RECONCILED.labels(deposit.status).inc()
        if credits:
            await self._mirror.deliver(credits)


async def _credit(
    conn: asyncpg.Connection, user_id: int, deposit: Deposit, payment_id: str | None
) -> tuple[Deposit, list[EngineCredit]]:
    """Complete the (locked) deposit and credit the user, in the caller's transaction."""
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
                deposit.id,
            )
        ],
    )
    completed = await store.complete_deposit(conn, deposit.id, payment_id, transfer_id)
    credit = await record_credit(conn, "DEPOSIT", transfer_id, user_id, deposit.amount)
    return completed, [credit]


async def _payment_failed(conn: asyncpg.Connection, deposit: Deposit, event: PaymentEvent) -> str:
    """A failed or abandoned payment: a pending deposit fails; anything else stands."""
    if deposit.status != "pending":
        return "ignored"
    await store.close_deposit(conn, deposit.id, "failed", "payment failed", event.payment_id)
    return "failed"


def _paid_again(deposit: Deposit, event: PaymentEvent) -> str:
    """A success for a deposit already settled: the same payment repeated, or a second
    payment of the same order (money an operator must return)."""
    if deposit.status == "completed" and deposit.provider_reference in (None, event.payment_id):
        return "repeat"
    metrics.PAYMENT_MISMATCHES.inc()
    logger.bind(deposit_id=deposit.id, payment_id=event.payment_id).error(
        "deposit {} is {} but the provider reports another payment of its order; "
        "not credited: refund it",
        deposit.id,
        deposit.status,
    )
    return "repeat"


async def _under_review(
    conn: asyncpg.Connection,
    deposit: Deposit,
    payment_id: str | None,
    amount: Decimal,
    currency: str,
) -> Deposit:
    """Paid, but not what was asked: nothing is credited until an operator looks."""
    metrics.PAYMENT_MISMATCHES.inc()
    logger.bind(deposit_id=deposit.id).error(
        "deposit {} asked {} paise INR but the provider reports {} {}: under review, not credited",
        deposit.id,
        deposit.amount,
        amount,
        currency,
    )
    reason = f"paid {amount} {currency}, expected {Decimal(deposit.amount).scaleb(-2)} {CURRENCY}"
    return await store.close_deposit(conn, deposit.id, "review", reason, payment_id)


def _repeated(known: Deposit, amount: int) -> Deposit:
    """The answer to a key used before: its deposit (whatever became of it), if this
    one asked the same."""
    if known.amount != amount:
        raise idempotency_conflict()
    return known
