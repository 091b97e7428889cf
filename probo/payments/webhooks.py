"""Cashfree's webhooks, checked and read: the signature over the raw body, the
freshness of its timestamp, and the two payloads we act on (a payment of a deposit's
order; a payout's transfer), typed. Nothing here touches money."""

from __future__ import annotations

import base64
import hashlib
import hmac
from decimal import Decimal
from typing import Annotated

import msgspec

from probo.web import StorableText

WEBHOOK_AGE_MAX_MS = 5 * 60 * 1000  # older (or further in the future) is refused

PAYMENT_SUCCEEDED = "PAYMENT_SUCCESS_WEBHOOK"
PAYMENT_FAILED = ("PAYMENT_FAILED_WEBHOOK", "PAYMENT_USER_DROPPED_WEBHOOK")
PAYOUT_EVENTS = ("TRANSFER_SUCCESS", "TRANSFER_FAILED", "TRANSFER_REJECTED", "TRANSFER_REVERSED")


# Ids as the provider writes them, bounded and storable; an id that is not ours is
# simply not found (SPEC §11: an unknown order is answered 200).
ProviderId = Annotated[StorableText, msgspec.Meta(min_length=1, max_length=128)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{1,8}$")]
Description = Annotated[StorableText, msgspec.Meta(max_length=500)]


class WebhookMalformed(ValueError):
    """A correctly signed body that is not a webhook we can read."""


def signature_valid(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now_ms: int
) -> bool:
    """`signature` is base64(HMAC-SHA256(secret, timestamp + body)) and `timestamp`
    (milliseconds) is within WEBHOOK_AGE_MAX_MS of now."""
    if not secret or not timestamp or not signature or not timestamp.isascii():
        return False
    if not timestamp.isdigit() or abs(now_ms - int(timestamp)) > WEBHOOK_AGE_MAX_MS:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256)
    expected = base64.b64encode(mac.digest())
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


class _Kind(msgspec.Struct):
    type: str


class _Order(msgspec.Struct):
    order_id: ProviderId


class _Payment(msgspec.Struct):
    cf_payment_id: ProviderId | int
    payment_status: str
    payment_amount: Decimal
    payment_currency: Currency


class _PaymentData(msgspec.Struct):
    order: _Order
    payment: _Payment


class _PaymentWebhook(msgspec.Struct):
    type: str
    data: _PaymentData


class _TransferData(msgspec.Struct):
    transfer_id: ProviderId
    status: str | None = None
    cf_transfer_id: ProviderId | int | None = None
    status_description: Description | None = None


class _PayoutWebhook(msgspec.Struct):
    type: str
    data: _TransferData


class PaymentEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A payment of an order: `succeeded`, or not (failed, or the payer left)."""

    order_id: str
    payment_id: str
    succeeded: bool
    amount: Decimal  # rupees, as the provider wrote them
    currency: str


class PayoutEvent(msgspec.Struct, frozen=True, kw_only=True):
    transfer_id: str
    succeeded: bool
    reversed: bool  # the bank returned a payout it had made
    reference: str | None
    reason: str | None


def _kind(body: bytes) -> str:
    try:
        return msgspec.json.decode(body, type=_Kind).type
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        raise WebhookMalformed(f"not a webhook: {exc}") from None


def payment_event(body: bytes) -> PaymentEvent | None:
    """The payment a PG webhook tells of; None for kinds we do not act on.
    Raises WebhookMalformed."""
    kind = _kind(body)
    if kind != PAYMENT_SUCCEEDED and kind not in PAYMENT_FAILED:
        return None
    try:
        webhook = msgspec.json.decode(body, type=_PaymentWebhook)
    except msgspec.MsgspecError as exc:
        raise WebhookMalformed(f"{kind}: {exc}") from None
    payment = webhook.data.payment
    if not payment.payment_amount.is_finite():
        raise WebhookMalformed(f"{kind}: payment_amount is not a number")
    if kind == PAYMENT_SUCCEEDED and payment.payment_status != "SUCCESS":
        return None  # not a success after all: nothing to act on
    return PaymentEvent(
        order_id=webhook.data.order.order_id,
        payment_id=str(payment.cf_payment_id),
        succeeded=kind == PAYMENT_SUCCEEDED,
        amount=payment.payment_amount,
        currency=payment.payment_currency,
    )


def payout_event(body: bytes) -> PayoutEvent | None:
    """The payout a Payouts webhook tells of; None for kinds we do not act on.
    Raises WebhookMalformed."""
    kind = _kind(body)
    if kind not in PAYOUT_EVENTS:
        return None
    try:
        webhook = msgspec.json.decode(body, type=_PayoutWebhook)
    except msgspec.MsgspecError as exc:
        raise WebhookMalformed(f"{kind}: {exc}") from None
    data = webhook.data
    return PayoutEvent(
        transfer_id=data.transfer_id,
        succeeded=kind == "TRANSFER_SUCCESS",
        reversed=kind == "TRANSFER_REVERSED",
        reference=None if data.cf_transfer_id is None else str(data.cf_transfer_id),
        reason=data.status_description or kind.removeprefix("TRANSFER_").lower(),
    )
