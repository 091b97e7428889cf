"""Deposits through Cashfree (SPEC §11), against a fake Cashfree over real HTTP: an order
per deposit, nothing credited until the provider confirms, the signed webhook and the
reconciler credit once whatever the repeats and races, and every bad webhook is refused
without a change. Each test ends with the ledger audited and the engine equal to Postgres."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

import httpx
import pytest
from loguru import logger

from probo.services import services_of
from tests.cashfree import (
    CLIENT_SECRET,
    PAYMENT_WEBHOOK,
    RECONCILE_AFTER_S,
    CashfreeExchange,
    eventually,
    exchange,
    now_ms,
)
from tests.conftest import assert_error
from tests.fake_cashfree import payment_webhook_body, sign
from tests.trading import Trader, metric_value

__all__ = ["exchange"]  # the module's fixture

SIGNUP_BONUS = 1500
MISMATCHES = "probo_payment_mismatches_total"


async def balance(exchange: CashfreeExchange, trader: Trader) -> int:
    wallet = await trader.wallet()
    engine_cash = services_of(exchange.app).engine.exchange.cash(trader.id)
    assert engine_cash == wallet["balance"]  # the engine holds what Postgres holds
    return wallet["balance"]


async def mismatches(exchange: CashfreeExchange) -> float:
    return metric_value((await exchange.client.get("/metrics")).text, MISMATCHES)


def success(
    order_id: str, rupees: str, *, payment_id: str | None = None, currency: str = "INR"
) -> bytes:
    return payment_webhook_body(
        order_id,
        amount=rupees,
        currency=currency,
        cf_payment_id=payment_id or uuid.uuid4().hex[:12],
    )


# --- the happy path --------------------------------------------------------------------------


async def test_a_deposit_opens_an_order_and_credits_only_when_paid(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader()
    deposit = await exchange.deposit(trader, 12_345)
    assert (deposit["status"], deposit["provider"], deposit["amount"]) == (
        "pending",
        "cashfree",
        12_345,
    )
    assert deposit["completed_at"] is None
    order_id = deposit["checkout"]["order_id"]
    assert deposit["checkout"]["payment_session_id"].startswith("session_")
    order = exchange.fake.orders[order_id]
    assert (order.order_amount, order.order_currency) == (Decimal("123.45"), "INR")
    assert await balance(exchange, trader) == SIGNUP_BONUS  # nothing credited yet

    delivery = await exchange.fake.pay(order_id)
    assert delivery is not None and delivery.status == 200
    detail = (
        await exchange.client.get(
            f"/api/v1/wallet/deposits/{deposit['id']}", headers=trader.headers
        )
    ).json()
    assert detail["status"] == "completed" and detail["completed_at"] is not None
    assert await balance(exchange, trader) == SIGNUP_BONUS + 12_345
    listed = (await exchange.client.get("/api/v1/wallet/deposits", headers=trader.headers)).json()
    assert [(d["id"], d["status"]) for d in listed["items"]] == [(deposit["id"], "completed")]
    assert listed["next_cursor"] is None
    await exchange.audited()


async def test_the_same_key_returns_the_pending_deposit_and_its_checkout(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader()
    key = uuid.uuid4().hex
    first = await exchange.deposit(trader, 5000, key)
    again = await exchange.client.post(
        "/api/v1/wallet/deposits",
        json={"amount": 5000, "idempotency_key": key},
        headers=trader.headers,
    )
    assert again.status_code == 200
    assert again.json() == first
    conflict = await exchange.client.post(
        "/api/v1/wallet/deposits",
        json={"amount": 5001, "idempotency_key": key},
        headers=trader.headers,
    )
    assert_error(conflict, 409, "idempotency_conflict")
    await exchange.audited()


async def test_a_deposit_of_another_user_is_not_found(exchange: CashfreeExchange) -> None:
    owner, other = await exchange.trader(), await exchange.trader()
    deposit = await exchange.deposit(owner, 1000)
    response = await exchange.client.get(
        f"/api/v1/wallet/deposits/{deposit['id']}", headers=other.headers
    )
    assert_error(response, 404, "not_found")


async def test_an_unreachable_provider_answers_503_and_leaves_nothing_pending(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader()
    key = uuid.uuid4().hex
    exchange.fake.unavailable = True
    try:
        response = await exchange.client.post(
            "/api/v1/wallet/deposits",
            json={"amount": 2000, "idempotency_key": key},
            headers=trader.headers,
        )
    finally:
        exchange.fake.unavailable = False
    assert_error(response, 503, "unavailable")
    listed = (await exchange.client.get("/api/v1/wallet/deposits", headers=trader.headers)).json()
    assert listed["items"] == []
    retried = await exchange.deposit(trader, 2000, key)  # the same key works once it is back
    assert retried["status"] == "pending"
    await exchange.audited()


# --- repeats and races --------------------------------------------------------------------------


async def test_a_replayed_webhook_is_answered_200_and_credits_nothing(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader()
    deposit = await exchange.deposit(trader, 3000)
    body = success(deposit["checkout"]["order_id"], "30.00", payment_id="pay1")
    for _ in range(3):
        response = await exchange.webhook(PAYMENT_WEBHOOK, body)
        assert response.status_code == 200, response.text
    assert await balance(exchange, trader) == SIGNUP_BONUS + 3000
    # A success of another payment for an order already paid: logged, counted, not credited.
    before = await mismatches(exchange)
    second = success(deposit["checkout"]["order_id"], "30.00", payment_id="pay2")
    assert (await exchange.webhook(PAYMENT_WEBHOOK, second)).status_code == 200
    assert await balance(exchange, trader) == SIGNUP_BONUS + 3000
    assert await mismatches(exchange) == before + 1
    await exchange.audited()


async def test_twenty_duplicate_webhooks_at_once_and_the_reconciler_credit_once(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader()
    deposit = await exchange.deposit(trader, 7700)
    order_id = deposit["checkout"]["order_id"]
    await exchange.fake.pay(order_id, send_webhook=False)  # PAID at the provider
    await asyncio.sleep(RECONCILE_AFTER_S + 0.1)  # and old enough for the reconciler
    body = success(order_id, "77.00", payment_id="dup")
    deposits = services_of(exchange.app).wallet.deposits
    results = await asyncio.gather(
        *(exchange.webhook(PAYMENT_WEBHOOK, body) for _ in range(20)),
        deposits.reconcile(0),
        deposits.reconcile(0),
    )
    assert [r.status_code for r in results[:20]] == [200] * 20  # type: ignore[union-attr]
    assert await balance(exchange, trader) == SIGNUP_BONUS + 7700
    credits = await exchange.db.fetchval(
        "SELECT count(*) FROM transfers WHERE kind = 'deposit' AND ref_id = $1", deposit["id"]
    )
    assert credits == 1
    await exchange.audited()


async def test_the_reconciler_credits_a_payment_whose_webhook_never_came(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader()
    deposit = await exchange.deposit(trader, 4200)
    await exchange.fake.pay(deposit["checkout"]["order_id"], send_webhook=False)
    await eventually(lambda: exchange.deposit_status(trader, deposit["id"]), "completed")
    assert await balance(exchange, trader) == SIGNUP_BONUS + 4200
    await exchange.audited()


async def test_the_reconciler_fails_an_order_that_expired_unpaid(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader()
    deposit = await exchange.deposit(trader, 4300)
    exchange.fake.orders[deposit["checkout"]["order_id"]].order_status = "EXPIRED"
    await eventually(lambda: exchange.deposit_status(trader, deposit["id"]), "failed")
    assert await balance(exchange, trader) == SIGNUP_BONUS
    await exchange.audited()


async def test_a_pending_order_stays_pending_while_the_payer_has_not_paid(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader()
    deposit = await exchange.deposit(trader, 4400)
    await asyncio.sleep(RECONCILE_AFTER_S + 1.5)  # the reconciler has asked by now
    assert await exchange.deposit_status(trader, deposit["id"]) == "pending"
    assert any(
        r.method == "GET" and deposit["checkout"]["order_id"] in r.path
        for r in exchange.fake.requests
    )


# --- what the provider reports -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rupees", "currency"), [("40.01", "INR"), ("39.99", "INR"), ("40.00", "USD")]
)
async def test_a_payment_that_differs_from_the_order_is_put_under_review_and_logged(
    exchange: CashfreeExchange, rupees: str, currency: str
) -> None:
    trader = await exchange.trader()
    deposit = await exchange.deposit(trader, 4000)
    errors: list[str] = []
    sink = logger.add(lambda message: errors.append(str(message)), level="ERROR")
    before = await mismatches(exchange)
    try:
        body = success(deposit["checkout"]["order_id"], rupees, currency=currency)
        assert (await exchange.webhook(PAYMENT_WEBHOOK, body)).status_code == 200
    finally:
        logger.remove(sink)
    reviewed = (
        await exchange.client.get(
            f"/api/v1/wallet/deposits/{deposit['id']}", headers=trader.headers
        )
    ).json()
    assert (reviewed["status"], reviewed["completed_at"]) == ("review", None)
    assert await balance(exchange, trader) == SIGNUP_BONUS
    assert await mismatches(exchange) == before + 1
    assert any(f"deposit {deposit['id']}" in line for line in errors), errors
    # A correct success afterwards does not credit it either: it is an operator's case now.
    body = success(deposit["checkout"]["order_id"], "40.00")
    assert (await exchange.webhook(PAYMENT_WEBHOOK, body)).status_code == 200
    assert await balance(exchange, trader) == SIGNUP_BONUS
    await exchange.audited()


@pytest.mark.parametrize("outcome", ["FAILED", "USER_DROPPED"])
async def test_a_failed_or_abandoned_payment_fails_the_deposit(
    exchange: CashfreeExchange, outcome: str
) -> None:
    trader = await exchange.trader()
    deposit = await exchange.deposit(trader, 2500)
    await exchange.fake.pay(deposit["checkout"]["order_id"], outcome=outcome)
    assert await exchange.deposit_status(trader, deposit["id"]) == "failed"
    assert await balance(exchange, trader) == SIGNUP_BONUS
    # The payer retried in the checkout and paid: the money arrived, so it is credited.
    await exchange.fake.pay(deposit["checkout"]["order_id"])
    assert await exchange.deposit_status(trader, deposit["id"]) == "completed"
    assert await balance(exchange, trader) == SIGNUP_BONUS + 2500
    await exchange.audited()


async def test_a_webhook_for_an_unknown_order_is_answered_200_and_ignored(
    exchange: CashfreeExchange,
) -> None:
    response = await exchange.webhook(PAYMENT_WEBHOOK, success("order_not_ours_1", "10.00"))
    assert response.status_code == 200, response.text
    await exchange.audited()


async def test_a_success_webhook_whose_payment_did_not_succeed_changes_nothing(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader()
    deposit = await exchange.deposit(trader, 2200)
    body = json.loads(success(deposit["checkout"]["order_id"], "22.00"))
    body["data"]["payment"]["payment_status"] = "PENDING"
    response = await exchange.webhook(PAYMENT_WEBHOOK, json.dumps(body).encode())
    assert (response.status_code, response.json()["status"]) == (200, "ignored")
    assert await exchange.deposit_status(trader, deposit["id"]) == "pending"


async def test_an_order_id_of_any_shape_that_is_not_ours_is_answered_200(
    exchange: CashfreeExchange,
) -> None:
    for order_id in ("order#1", "ordre été", "x" * 128):
        response = await exchange.webhook(PAYMENT_WEBHOOK, success(order_id, "10.00"))
        assert response.status_code == 200, response.text


async def test_a_webhook_of_a_kind_we_do_not_act_on_is_answered_200(
    exchange: CashfreeExchange,
) -> None:
    body = json.dumps({"type": "WEBHOOK", "data": {"test_object": {"test": "webhook"}}}).encode()
    response = await exchange.webhook(PAYMENT_WEBHOOK, body)
    assert (response.status_code, response.json()["status"]) == (200, "ignored")


# --- bad webhooks ----------------------------------------------------------------------------------


async def test_forged_stale_or_missing_signatures_are_401_and_change_nothing(
    exchange: CashfreeExchange,
) -> None:
    trader = await exchange.trader()
    deposit = await exchange.deposit(trader, 6000)
    body = success(deposit["checkout"]["order_id"], "60.00")
    stamp = str(now_ms())
    attempts = [
        {"x-webhook-timestamp": stamp, "x-webhook-signature": sign("not-the-secret", stamp, body)},
        {"x-webhook-timestamp": stamp, "x-webhook-signature": sign(CLIENT_SECRET, stamp, b"{}")},
        {"x-webhook-timestamp": stamp},
        {"x-webhook-signature": sign(CLIENT_SECRET, stamp, body)},
        {},
        {"x-webhook-timestamp": "soon", "x-webhook-signature": "AAAA"},
    ]
    for stale_ms in (now_ms() - 6 * 60_000, now_ms() + 6 * 60_000):
        old = str(stale_ms)
        attempts.append(
            {"x-webhook-timestamp": old, "x-webhook-signature": sign(CLIENT_SECRET, old, body)}
        )
    for headers in attempts:
        response = await exchange.client.post(
            PAYMENT_WEBHOOK, content=body, headers=headers | {"content-type": "application/json"}
        )
        assert_error(response, 401, "unauthorized")
    assert await exchange.deposit_status(trader, deposit["id"]) == "pending"
    assert await balance(exchange, trader) == SIGNUP_BONUS
    # A timestamp four minutes old is still fresh.
    fresh = await exchange.webhook(PAYMENT_WEBHOOK, body, timestamp_ms=now_ms() - 4 * 60_000)
    assert fresh.status_code == 200
    assert await balance(exchange, trader) == SIGNUP_BONUS + 6000
    await exchange.audited()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"type": "PAYMENT_SUCCESS_WEBHOOK"}',
        b'{"type": "PAYMENT_SUCCESS_WEBHOOK", "data": {"order": {"order_id": "x"}}}',
        b'{"type": "PAYMENT_SUCCESS_WEBHOOK", "data": {"order": {"order_id": "a\\u0000b"}, '
        b'"payment": {"cf_payment_id": "1", "payment_status": "SUCCESS", '
        b'"payment_amount": 10.00, "payment_currency": "INR"}}}',
        b'{"type": "PAYMENT_SUCCESS_WEBHOOK", "data": {"order": {"order_id": "o1"}, '
        b'"payment": {"cf_payment_id": "1", "payment_status": "SUCCESS", '
        b'"payment_amount": "lots", "payment_currency": "INR"}}}',
        b'{"type": 7}',
        b"\xff\xfe",
    ],
)
async def test_malformed_signed_bodies_are_400(exchange: CashfreeExchange, body: bytes) -> None:
    response = await exchange.webhook(PAYMENT_WEBHOOK, body)
    assert_error(response, 400, "validation_error")


async def test_the_simulated_exchange_accepts_no_webhooks(client: httpx.AsyncClient) -> None:
    """The session's exchange runs the simulated provider: there is no secret to sign with."""
    body = success("probo_1_abc", "10.00")
    stamp = str(now_ms())
    headers = {"x-webhook-timestamp": stamp, "x-webhook-signature": sign("", stamp, body)}
    assert_error(
        await client.post(PAYMENT_WEBHOOK, content=body, headers=headers), 401, "unauthorized"
    )
