"""Withdrawals through Cashfree Payouts (SPEC §11), against a fake Cashfree over real
HTTP: the money leaves the user at once into payouts_pending (with the fee), small ones
are paid out to the verified KYC account, large ones wait for an admin, and the payout's
outcome — its webhook, or the reconciler's status check — completes it or returns the
money, once. Each test ends with the ledger audited and the engine equal to Postgres."""

from __future__ import annotations

import asyncio

import pytest
from loguru import logger

from probo.ledger import ledger_breaches
from probo.services import services_of
from tests.cashfree import (
    FEE_BPS,
    PAYOUT_WEBHOOK,
    REVIEW_ABOVE,
    CashfreeExchange,
    eventually,
    exchange,
)
from tests.conftest import assert_error
from tests.fake_cashfree import payout_webhook_body
from tests.trading import Trader

__all__ = ["exchange"]  # the module's fixture

SIGNUP_BONUS = 1500


def fee_of(amount: int) -> int:
    return amount * FEE_BPS // 10_000


async def cash(exchange: CashfreeExchange, trader: Trader) -> int:
    wallet = await trader.wallet()
    assert services_of(exchange.app).engine.exchange.cash(trader.id) == wallet["balance"]
    return wallet["balance"]


async def status_of(exchange: CashfreeExchange, trader: Trader, withdrawal_id: int) -> str:
    return (await exchange.withdrawal(trader, withdrawal_id))["status"]


def transfer_of(exchange: CashfreeExchange, withdrawal_id: int):  # type: ignore[no-untyped-def]
    return exchange.fake.transfers.get(f"probo_wd_{withdrawal_id}")


async def decide(
    exchange: CashfreeExchange, withdrawal_id: int, decision: str, reason: str | None = None
):  # type: ignore[no-untyped-def]
    return await exchange.client.post(
        f"/api/v1/admin/withdrawals/{withdrawal_id}/decision",
        json={"decision": decision} | ({"reason": reason} if reason else {}),
        headers=exchange.admin,
    )


async def test_a_withdrawal_goes_to_the_verified_account_and_completes_on_the_webhook(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader(20_000, verified=True)
    response = await exchange.withdraw(trader, 10_000)
    assert response.status_code == 201, response.text
    withdrawal = response.json()
    assert (withdrawal["amount"], withdrawal["fee"], withdrawal["status"]) == (
        10_000,
        fee_of(10_000),
        "processing",
    )
    assert await cash(exchange, trader) == SIGNUP_BONUS + 20_000 - 10_000 - fee_of(10_000)
    transfer = transfer_of(exchange, withdrawal["id"])
    assert transfer is not None and str(transfer.transfer_amount) == "100.00"
    kyc = (await exchange.client.get("/api/v1/admin/kyc", headers=exchange.admin)).json()
    [account] = [k for k in kyc["items"] if k["user_id"] == trader.id]
    instrument = transfer.beneficiary_details["beneficiary_instrument_details"]
    assert (instrument["bank_account_number"], instrument["bank_ifsc"]) == (
        account["bank_account"],
        account["ifsc"],
    )
    await exchange.audited()  # payouts_pending holds it meanwhile

    await exchange.fake.settle(transfer.transfer_id, "SUCCESS")
    done = await exchange.withdrawal(trader, withdrawal["id"])
    assert done["status"] == "completed" and done["completed_at"] is not None
    history = (
        await exchange.client.get("/api/v1/wallet/transactions", headers=trader.headers)
    ).json()["items"]
    assert [(t["kind"], t["amount"]) for t in history[:2]] == [
        ("fee", -fee_of(10_000)),
        ("withdrawal", -10_000),
    ] or [(t["kind"], t["amount"]) for t in history[:2]] == [
        ("withdrawal", -10_000),
        ("fee", -fee_of(10_000)),
    ]
    # The same webhook again changes nothing.
    body = payout_webhook_body(
        transfer.transfer_id, status="SUCCESS", cf_transfer_id="1", amount="100.00"
    )
    assert (await exchange.webhook(PAYOUT_WEBHOOK, body)).status_code == 200
    assert await status_of(exchange, trader, withdrawal["id"]) == "completed"
    await exchange.audited()


@pytest.mark.parametrize("outcome", ["FAILED", "REJECTED"])
async def test_a_failed_payout_returns_the_amount_and_the_fee(
    exchange: CashfreeExchange, outcome: str
) -> None:
    trader = await exchange.trader(20_000, verified=True)
    before = await cash(exchange, trader)
    withdrawal = (await exchange.withdraw(trader, 8000)).json()
    assert await cash(exchange, trader) == before - 8000 - fee_of(8000)
    await exchange.fake.settle(f"probo_wd_{withdrawal['id']}", outcome)
    failed = await exchange.withdrawal(trader, withdrawal["id"])
    assert failed["status"] == "failed" and failed["reason"]
    assert await cash(exchange, trader) == before
    history = (
        await exchange.client.get("/api/v1/wallet/transactions", headers=trader.headers)
    ).json()["items"]
    reversals = sorted(t["amount"] for t in history if t["kind"] == "withdrawal_reversal")
    assert reversals == sorted([8000, fee_of(8000)])
    await exchange.audited()


async def test_amount_and_fee_must_both_be_available(exchange: CashfreeExchange) -> None:
    trader = await exchange.trader(8500, verified=True)  # 10,000 in all
    assert_error(await exchange.withdraw(trader, 10_000), 422, "insufficient_funds")
    largest = 10_000 * 10_000 // (10_000 + FEE_BPS)  # amount + 1% fee fits
    response = await exchange.withdraw(trader, largest)
    assert response.status_code == 201, response.text
    assert await cash(exchange, trader) == 10_000 - largest - fee_of(largest)
    await exchange.audited()


async def test_a_large_withdrawal_waits_for_an_admin_who_approves_it(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader(REVIEW_ABOVE + 10_000, verified=True)
    withdrawal = (await exchange.withdraw(trader, REVIEW_ABOVE + 1)).json()
    assert withdrawal["status"] == "pending"
    assert transfer_of(exchange, withdrawal["id"]) is None  # no payout before the decision
    queue = (
        await exchange.client.get(
            "/api/v1/admin/withdrawals", params={"status": "pending"}, headers=exchange.admin
        )
    ).json()
    [listed] = [w for w in queue["items"] if w["id"] == withdrawal["id"]]
    assert (listed["user_id"], listed["amount"], listed["status"]) == (
        trader.id,
        REVIEW_ABOVE + 1,
        "pending",
    )
    assert listed["bank_account"] and listed["ifsc"]
    await exchange.audited()

    approved = await decide(exchange, withdrawal["id"], "APPROVED")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "processing"
    assert transfer_of(exchange, withdrawal["id"]) is not None
    assert_error(await decide(exchange, withdrawal["id"], "REJECTED"), 409, "invalid_transition")
    await exchange.fake.settle(f"probo_wd_{withdrawal['id']}", "SUCCESS")
    assert await status_of(exchange, trader, withdrawal["id"]) == "completed"
    await exchange.audited()


async def test_a_rejected_withdrawal_returns_the_money_with_the_reason(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader(REVIEW_ABOVE + 10_000, verified=True)
    before = await cash(exchange, trader)
    withdrawal = (await exchange.withdraw(trader, REVIEW_ABOVE + 5)).json()
    rejected = await decide(exchange, withdrawal["id"], "REJECTED", "unusual activity")
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["reason"]) == (
        "rejected",
        "unusual activity",
    )
    assert await cash(exchange, trader) == before
    assert_error(await decide(exchange, withdrawal["id"], "APPROVED"), 409, "invalid_transition")
    assert transfer_of(exchange, withdrawal["id"]) is None
    await exchange.audited()


async def test_admin_decisions_need_an_admin_and_a_known_withdrawal(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader()
    response = await exchange.client.post(
        "/api/v1/admin/withdrawals/1/decision",
        json={"decision": "APPROVED"},
        headers=trader.headers,
    )
    assert_error(response, 403, "forbidden")
    assert_error(await decide(exchange, 9_999_999, "APPROVED"), 404, "not_found")
    bad = await exchange.client.post(
        "/api/v1/admin/withdrawals/1/decision", json={"decision": "MAYBE"}, headers=exchange.admin
    )
    assert bad.status_code in (400, 422) and bad.json()["error"]["code"] == "validation_error"


async def test_a_payout_the_provider_could_not_take_is_sent_by_the_reconciler(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader(20_000, verified=True)
    exchange.fake.unavailable = True
    try:
        response = await exchange.withdraw(trader, 5000)
    finally:
        exchange.fake.unavailable = False
    assert response.status_code == 201, response.text
    withdrawal = response.json()
    assert withdrawal["status"] == "processing"
    assert transfer_of(exchange, withdrawal["id"]) is None
    await eventually(lambda: _sent(exchange, withdrawal["id"]), True)
    await exchange.fake.settle(f"probo_wd_{withdrawal['id']}", "SUCCESS", send_webhook=False)
    # No webhook: the reconciler asks the provider and completes it.
    await eventually(lambda: status_of(exchange, trader, withdrawal["id"]), "completed")
    assert len([t for t in exchange.fake.transfers if t == f"probo_wd_{withdrawal['id']}"]) == 1
    await exchange.audited()


async def _sent(exchange: CashfreeExchange, withdrawal_id: int) -> bool:
    return transfer_of(exchange, withdrawal_id) is not None


async def test_twenty_duplicate_failure_webhooks_and_the_reconciler_return_the_money_once(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader(20_000, verified=True)
    before = await cash(exchange, trader)
    withdrawal = (await exchange.withdraw(trader, 6000)).json()
    transfer_id = f"probo_wd_{withdrawal['id']}"
    await exchange.fake.settle(transfer_id, "FAILED", send_webhook=False)
    body = payout_webhook_body(transfer_id, status="FAILED", cf_transfer_id="9", amount="60.00")
    withdrawals = services_of(exchange.app).wallet.withdrawals
    results = await asyncio.gather(
        *(exchange.webhook(PAYOUT_WEBHOOK, body) for _ in range(20)),
        withdrawals.reconcile(0),
    )
    assert [r.status_code for r in results[:20]] == [200] * 20  # type: ignore[union-attr]
    assert await cash(exchange, trader) == before
    reversals = await exchange.db.fetchval(
        "SELECT count(*) FROM transfers WHERE kind = 'withdrawal_reversal' AND ref_id = $1",
        withdrawal["id"],
    )
    assert reversals == 2  # the amount and the fee, once each
    await exchange.audited()


async def test_a_payout_returned_after_completion_is_logged_and_changes_nothing(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader(20_000, verified=True)
    withdrawal = (await exchange.withdraw(trader, 3000)).json()
    transfer_id = f"probo_wd_{withdrawal['id']}"
    await exchange.fake.settle(transfer_id, "SUCCESS")
    after = await cash(exchange, trader)
    errors: list[str] = []
    sink = logger.add(lambda message: errors.append(str(message)), level="ERROR")
    try:
        await exchange.fake.settle(transfer_id, "REVERSED")
    finally:
        logger.remove(sink)
    assert any(f"completed withdrawal {withdrawal['id']}" in line for line in errors), errors
    assert await status_of(exchange, trader, withdrawal["id"]) == "completed"
    assert await cash(exchange, trader) == after
    await exchange.audited()


async def test_payout_webhooks_refuse_bad_signatures_and_bodies(exchange: CashfreeExchange) -> None:
    trader = await exchange.trader(20_000, verified=True)
    withdrawal = (await exchange.withdraw(trader, 2000)).json()
    transfer_id = f"probo_wd_{withdrawal['id']}"
    body = payout_webhook_body(transfer_id, status="FAILED", cf_transfer_id="3", amount="20.00")
    forged = await exchange.webhook(PAYOUT_WEBHOOK, body, secret="someone-else")
    assert_error(forged, 401, "unauthorized")
    assert await status_of(exchange, trader, withdrawal["id"]) == "processing"
    for malformed in (
        b"{",
        b'{"type": "TRANSFER_FAILED"}',
        b'{"type": "TRANSFER_FAILED", "data": {}}',
    ):
        assert_error(await exchange.webhook(PAYOUT_WEBHOOK, malformed), 400, "validation_error")
    unknown = payout_webhook_body(
        "someone_elses_7", status="SUCCESS", cf_transfer_id="4", amount="1.00"
    )
    assert (await exchange.webhook(PAYOUT_WEBHOOK, unknown)).status_code == 200
    assert await status_of(exchange, trader, withdrawal["id"]) == "processing"
    await exchange.audited()


async def test_the_audit_finds_payouts_pending_that_differs_from_what_is_owed(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader(20_000, verified=True)
    await exchange.withdraw(trader, 1000)
    async with exchange.db.acquire() as conn:
        assert await ledger_breaches(conn) == []
        # A payout marked done without its money moving out of payouts_pending; put back after.
        statuses = "UPDATE withdrawals SET status = $2 WHERE user_id = $1"
        await conn.execute(statuses, trader.id, "completed")
        try:
            breaches = await ledger_breaches(conn)
        finally:
            await conn.execute(statuses, trader.id, "processing")
    assert [b.invariant for b in breaches] == ["payouts-pending"]
    await exchange.audited()
