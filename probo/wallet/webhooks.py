"""The payment provider's webhooks (SPEC §11): signed over the raw body and its
timestamp with the client secret. A forged, stale or unsigned call gets 401 and changes
nothing; a signed body we cannot read gets 400; anything we read is answered 200 —
repeats, unknown orders and kinds we do not act on included — so the provider stops
retrying what has been handled."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import msgspec
from litestar import Request, post

from probo.payments import (
    WebhookMalformed,
    payment_event,
    payout_event,
    signature_valid,
)
from probo.services import services_of
from probo.wallet.service import WalletService
from probo.web import error_responses, unauthorized, validation_error

T = TypeVar("T")


class WebhookAck(msgspec.Struct):
    status: str  # "ok" when acted on, "ignored" for kinds we do not act on


async def _signed_event(request: Request, wallet: WalletService, read: Callable[[bytes], T]) -> T:
    """The event of a signed webhook (None for kinds we do not act on). Raises 401 for a
    missing, stale or invalid signature, 400 for a body we cannot read."""
    body = await request.body()
    if wallet.provider.name != "cashfree":
        raise unauthorized("webhooks are accepted only with PROBO_PAYMENTS_PROVIDER=cashfree")
    if not signature_valid(
        services_of(request.app).settings.cashfree_client_secret,
        request.headers.get("x-webhook-timestamp"),
        request.headers.get("x-webhook-signature"),
        body,
        now_ms=time.time_ns() // 1_000_000,
    ):
        raise unauthorized("missing, stale or invalid webhook signature")
    try:
        return read(body)
    except WebhookMalformed as exc:
        raise validation_error(str(exc), status_code=400) from None


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
    event = await _signed_event(request, wallet, payment_event)
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
    event = await _signed_event(request, wallet, payout_event)
    if event is None:
        return WebhookAck(status="ignored")
    await wallet.withdrawals.payout_reported(event)
    return WebhookAck(status="ok")


route_handlers = [payment_webhook, payout_webhook]
