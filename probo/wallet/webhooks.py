"""The payment provider's webhooks (SPEC §11): signed over the raw body and its
timestamp with the client secret. A forged, stale or unsigned call gets 401 and changes
nothing; a signed body we cannot read gets 400; anything we read is answered 200 —
repeats, unknown orders and kinds we do not act on included — so the provider stops
retrying what has been handled."""

from __future__ import annotations

import time

import msgspec
from litestar import Request, post

from probo.infra import Settings
from probo.payments import (
    WebhookMalformed,
    payment_event,
    payout_event,
    signature_valid,
)
from probo.services import services_of
from probo.wallet.service import WalletService
from probo.web import error_responses, unauthorized, validation_error


class WebhookAck(msgspec.Struct):
    status: str  # "ok" when acted on, "ignored" for kinds we do not act on


def _verified_body(
    settings: Settings, wallet: WalletService, request: Request, body: bytes
) -> None:
    if wallet.provider.name != "cashfree":
        raise unauthorized("webhooks are accepted only with PROBO_PAYMENTS_PROVIDER=cashfree")
    if not signature_valid(
        settings.cashfree_client_secret,
        request.headers.get("x-webhook-timestamp"),
        request.headers.get("x-webhook-signature"),
        body,
        now_ms=time.time_ns() // 1_000_000,
    ):
        raise unauthorized("missing, stale or invalid webhook signature")


@post(
    "/api/v1/payments/cashfree/webhook",
    status_code=200,
    tags=["payments"],
    summary="Cashfree payment webhooks (signed)",
    description="`x-webhook-signature` must be base64(HMAC-SHA256(client secret, "
    "`x-webhook-timestamp` + raw body)), the timestamp (ms) within 5 minutes of now.",
    responses=error_responses(400, 401, 413, 503, codes={401: "unauthorized"}),
)
async def payment_webhook(request: Request, wallet: WalletService) -> WebhookAck:
    body = await request.body()
    _verified_body(services_of(request.app).settings, wallet, request, body)
    try:
        event = payment_event(body)
    except WebhookMalformed as exc:
        raise validation_error(str(exc), status_code=400) from None
    if event is None:
        return WebhookAck(status="ignored")
    await wallet.deposits.payment_reported(event)
    return WebhookAck(status="ok")


@post(
    "/api/v1/payments/cashfree/payout-webhook",
    status_code=200,
    tags=["payments"],
    summary="Cashfree payout webhooks (signed)",
    description="Signed like the payment webhook. Moves a processing withdrawal to completed "
    "or failed, once.",
    responses=error_responses(400, 401, 413, 503, codes={401: "unauthorized"}),
)
async def payout_webhook(request: Request, wallet: WalletService) -> WebhookAck:
    body = await request.body()
    _verified_body(services_of(request.app).settings, wallet, request, body)
    try:
        event = payout_event(body)
    except WebhookMalformed as exc:
        raise validation_error(str(exc), status_code=400) from None
    if event is None:
        return WebhookAck(status="ignored")
    await wallet.withdrawals.payout_reported(event)
    return WebhookAck(status="ok")


route_handlers = [payment_webhook, payout_webhook]
