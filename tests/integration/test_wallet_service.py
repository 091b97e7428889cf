"""WalletService against real Postgres, the real engine and ledger writer (SPEC §4):
deposits within 100..10,000,000 paise and idempotent per (user, key), withdrawals only
with VERIFIED KYC and out of available funds, the history newest first. After money
moves, the ledger's invariants hold and the engine agrees with Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from probo.payments import OrderRequest, ProviderOrder, ProviderUnavailable, SimulatedProvider
from probo.web import ApiError, decode_cursor
from tests.services import (
    Services,
    admin_id,
    balance,
    funded_user,
    kyc_submission,
    ledger_problems,
    new_market,
    place,
    refused,
    sign_up,
    verified_user,
    warm_pool,
)

SIGNUP_BONUS = 1500
DECLINED = 5001  # paise the scripted provider declines
UNREACHABLE_ONCE = 5002  # paise whose first order finds the provider unreachable


class ScriptedProvider(SimulatedProvider):
    """The simulated provider, but declining some amounts and unreachable once for
    others; each order yields to the loop first, so concurrent duplicates overlap."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__()
        self.opened: Counter[str] = Counter()

    async def open_order(self, order: OrderRequest) -> ProviderOrder:
        await asyncio.sleep(0.005)
        self.opened[order.order_id] += 1
        if order.amount == DECLINED:
            return ProviderOrder(
                order_id=order.order_id,
                state="failed",
                amount=order.amount,
                currency="INR",
                reason="card declined",
            )
        if order.amount == UNREACHABLE_ONCE and self.opened[order.order_id] == 1:
            raise ProviderUnavailable("timed out")
        return await super().open_order(order)


@pytest.fixture(scope="module")
def payment_provider() -> ScriptedProvider:
    return ScriptedProvider()


def key(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex


# --- deposits ------------------------------------------------------------------------------


async def test_a_deposit_credits_the_wallet_its_history_and_the_engine(services: Services) -> None:
    user = await sign_up(services)
    deposit, created = await services.wallet.deposits.create(user, 50_000, key())
    assert created
    assert (deposit.status, deposit.amount) == ("completed", 50_000)
    wallet = await services.wallet.wallet(user)
    assert (wallet.balance, wallet.locked, wallet.available) == (51_500, 0, 51_500)
    assert services.engine.exchange.cash(user) == 51_500
    history = (await services.wallet.transactions(user, 50, None)).items
    assert [(t.kind, t.amount, t.ref) for t in history] == [
        ("deposit", 50_000, f"deposit:{deposit.id}"),
        ("signup_bonus", SIGNUP_BONUS, f"user:{user}"),
    ]
    assert await ledger_problems(services) == []


@pytest.mark.parametrize("amount", [-100, 0, 99, 10_000_001])
async def test_a_deposit_outside_100_to_10_000_000_paise_is_refused(
    services: Services, amount: int
) -> None:
    user = await sign_up(services)
    error = await refused(services.wallet.deposits.create(user, amount, key()))
    assert (error.status_code, error.code) == (422, "validation_error")
    assert await balance(services, user) == SIGNUP_BONUS


async def test_the_smallest_and_the_largest_deposit_are_accepted(services: Services) -> None:
    user = await sign_up(services)
    await services.wallet.deposits.create(user, 100, key())
    await services.wallet.deposits.create(user, 10_000_000, key())
    assert await balance(services, user) == SIGNUP_BONUS + 100 + 10_000_000
    assert await ledger_problems(services) == []


async def test_the_same_key_and_amount_returns_the_first_deposit(services: Services) -> None:
    user = await sign_up(services)
    idempotency_key = key()
    first, first_created = await services.wallet.deposits.create(user, 10_000, idempotency_key)
    again, again_created = await services.wallet.deposits.create(user, 10_000, idempotency_key)
    assert (first_created, again_created) == (True, False)
    assert again == first
    assert await balance(services, user) == SIGNUP_BONUS + 10_000


async def test_the_same_key_with_another_amount_is_a_conflict(services: Services) -> None:
    user = await sign_up(services)
    idempotency_key = key()
    await services.wallet.deposits.create(user, 10_000, idempotency_key)
    error = await refused(services.wallet.deposits.create(user, 10_001, idempotency_key))
    assert (error.status_code, error.code) == (409, "idempotency_conflict")
    assert await balance(services, user) == SIGNUP_BONUS + 10_000


async def test_idempotency_keys_are_per_user(services: Services) -> None:
    first, second = await sign_up(services), await sign_up(services)
    shared = key()
    a, _ = await services.wallet.deposits.create(first, 1000, shared)
    b, created = await services.wallet.deposits.create(second, 1000, shared)
    assert created and a.id != b.id
    assert await balance(services, first) == await balance(services, second) == 2500


async def test_concurrent_duplicates_credit_once(services: Services) -> None:
    user = await sign_up(services)
    idempotency_key = key()
    await warm_pool(services)
    results = await asyncio.gather(
        *(services.wallet.deposits.create(user, 7000, idempotency_key) for _ in range(20))
    )
    assert sorted(created for _, created in results) == [False] * 19 + [True]
    assert len({deposit.id for deposit, _ in results}) == 1
    assert await balance(services, user) == SIGNUP_BONUS + 7000
    assert services.engine.exchange.cash(user) == SIGNUP_BONUS + 7000
    assert await ledger_problems(services) == []


async def test_concurrent_duplicates_with_two_amounts_credit_one_and_refuse_the_other(
    services: Services,
) -> None:
    user = await sign_up(services)
    idempotency_key = key()
    amounts = [3000, 4000] * 5
    await warm_pool(services)
    results = await asyncio.gather(
        *(services.wallet.deposits.create(user, amount, idempotency_key) for amount in amounts),
        return_exceptions=True,
    )
    credited = {r[0].amount for r in results if isinstance(r, tuple)}
    assert len(credited) == 1, results
    [amount] = credited
    for requested, result in zip(amounts, results, strict=True):
        if requested == amount:
            assert isinstance(result, tuple), result
        else:
            assert isinstance(result, ApiError) and result.code == "idempotency_conflict", result
    assert await balance(services, user) == SIGNUP_BONUS + amount


async def test_a_declined_payment_credits_nothing_and_its_key_returns_the_failed_deposit(
    services: Services, payment_provider: ScriptedProvider
) -> None:
    user = await sign_up(services)
    idempotency_key = key()
    first, created = await services.wallet.deposits.create(user, DECLINED, idempotency_key)
    assert (created, first.status, first.reason, first.completed_at) == (
        True,
        "failed",
        "card declined",
        None,
    )
    again, created = await services.wallet.deposits.create(user, DECLINED, idempotency_key)
    assert (again, created) == (first, False)  # the original, as it ended
    [(order_id, opened)] = [
        (order_id, n) for order_id, n in payment_provider.opened.items() if f"_{user}_" in order_id
    ]
    assert opened == 1  # the outcome is stored: the provider is not asked again
    assert await balance(services, user) == SIGNUP_BONUS


async def test_a_deposit_the_provider_could_not_take_leaves_nothing_and_credits_once_on_retry(
    services: Services,
) -> None:
    user = await sign_up(services)
    idempotency_key = key()
    error = await refused(services.wallet.deposits.create(user, UNREACHABLE_ONCE, idempotency_key))
    assert (error.status_code, error.code) == (503, "unavailable")
    assert (await services.wallet.deposits.of_user(user, 50, None)).items == []
    assert await balance(services, user) == SIGNUP_BONUS
    retried, _ = await services.wallet.deposits.create(user, UNREACHABLE_ONCE, idempotency_key)
    again, created = await services.wallet.deposits.create(user, UNREACHABLE_ONCE, idempotency_key)
    assert retried.status == "completed"
    assert (again.id, created) == (retried.id, False)
    assert await balance(services, user) == SIGNUP_BONUS + UNREACHABLE_ONCE
    assert await ledger_problems(services) == []


# --- withdrawals -----------------------------------------------------------------------------


async def test_withdrawals_need_verified_kyc(services: Services) -> None:
    user = await funded_user(services, 10_000)
    admin = await admin_id(services)

    async def kyc_required() -> None:
        error = await refused(services.wallet.withdrawals.create(user, 1000, key()))
        assert (error.status_code, error.code) == (403, "kyc_required")

    await kyc_required()  # no KYC at all
    request, _ = await services.kyc.submit(user, kyc_submission())
    await kyc_required()  # pending
    await services.kyc.decide(admin, request.id, "REJECTED", "blurred photo")  # type: ignore[arg-type]
    await kyc_required()  # rejected
    request, _ = await services.kyc.submit(user, kyc_submission())
    await services.kyc.decide(admin, request.id, "VERIFIED", None)  # type: ignore[arg-type]
    withdrawal, created = await services.wallet.withdrawals.create(user, 1000, key())
    assert created and withdrawal.status == "completed"
    assert await balance(services, user) == SIGNUP_BONUS + 10_000 - 1000
    assert await ledger_problems(services) == []


async def test_a_withdrawal_leaves_once_per_key(services: Services) -> None:
    user = await verified_user(services, 10_000)
    idempotency_key = key()
    first, created = await services.wallet.withdrawals.create(user, 4000, idempotency_key)
    assert created
    assert (first.amount, first.status, first.idempotency_key) == (
        4000,
        "completed",
        idempotency_key,
    )
    again, created = await services.wallet.withdrawals.create(user, 4000, idempotency_key)
    assert (again.id, created) == (first.id, False)
    error = await refused(services.wallet.withdrawals.create(user, 5000, idempotency_key))
    assert (error.status_code, error.code) == (409, "idempotency_conflict")
    wallet = await services.wallet.wallet(user)
    assert (wallet.balance, wallet.locked, wallet.available) == (7500, 0, 7500)
    [latest, *_] = (await services.wallet.transactions(user, 50, None)).items
    assert (latest.kind, latest.amount, latest.ref) == (
        "withdrawal",
        -4000,
        f"withdrawal:{first.id}",
    )
    assert await ledger_problems(services) == []


async def test_only_available_funds_can_be_withdrawn(services: Services) -> None:
    user = await verified_user(services, 10_000)  # 11,500 in all
    market = await new_market(services)
    await place(services, user, market, "yes", "buy", 10, 500)  # locks 5,000
    error = await refused(services.wallet.withdrawals.create(user, 6501, key()))
    assert (error.status_code, error.code) == (422, "insufficient_funds")
    await services.wallet.withdrawals.create(user, 6500, key())
    wallet = await services.wallet.wallet(user)
    assert (wallet.balance, wallet.locked, wallet.available) == (5000, 5000, 0)
    error = await refused(services.wallet.withdrawals.create(user, 100, key()))
    assert (error.status_code, error.code) == (422, "insufficient_funds")
    error = await refused(services.wallet.withdrawals.create(user, 99, key()))
    assert (error.status_code, error.code) == (422, "validation_error")
    assert await ledger_problems(services) == []


async def test_concurrent_duplicate_withdrawals_debit_once(services: Services) -> None:
    user = await verified_user(services, 10_000)
    idempotency_key = key()
    await warm_pool(services)
    results = await asyncio.gather(
        *(services.wallet.withdrawals.create(user, 3000, idempotency_key) for _ in range(10))
    )
    assert sorted(created for _, created in results) == [False] * 9 + [True]
    assert len({withdrawal.id for withdrawal, _ in results}) == 1
    assert await balance(services, user) == SIGNUP_BONUS + 10_000 - 3000
    assert await ledger_problems(services) == []


async def test_racing_withdrawals_of_everything_pay_out_once(services: Services) -> None:
    user = await verified_user(services, 8500)  # 10,000 in all
    await warm_pool(services)
    results = await asyncio.gather(
        *(services.wallet.withdrawals.create(user, 10_000, key()) for _ in range(5)),
        return_exceptions=True,
    )
    outcomes = sorted("paid" if isinstance(r, tuple) else r.code for r in results)  # type: ignore[union-attr]
    assert outcomes == ["insufficient_funds"] * 4 + ["paid"]
    assert await balance(services, user) == 0
    assert await ledger_problems(services) == []


# --- history -----------------------------------------------------------------------------------


async def test_history_is_newest_first_and_pages_visit_every_item_once(services: Services) -> None:
    user = await funded_user(services, 0)
    for amount in range(1000, 6000, 1000):
        await services.wallet.deposits.create(user, amount, key())
    seen, cursor = [], None
    while True:
        page = await services.wallet.transactions(user, 2, decode_cursor(cursor))
        assert len(page.items) <= 2
        seen += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [t.amount for t in seen] == [5000, 4000, 3000, 2000, 1000, SIGNUP_BONUS]
    assert [t.id for t in seen] == sorted((t.id for t in seen), reverse=True)
