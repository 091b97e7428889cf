"""A fake Cashfree: a real HTTP server that speaks Cashfree's REST protocol.

This module owns the fake's state (orders, transfers, the API requests it received, the
webhooks it sent, its settings), its litestar app, and the signed webhooks:

- the Payment Gateway orders API under /pg (create and fetch orders);
- the Payouts V2 transfers API under /payout (create and fetch transfers);
- a control API under /_fake (pay an order, settle a transfer, change the settings, read
  the state) and a checkout page under /checkout, for tests and for a developer who
  clicks through a deposit by hand;
- `sign`, `signed_headers`, `payment_webhook_body` and `payout_webhook_body`, with which
  tests build valid and forged webhooks;
- `serve_fake_cashfree`, which serves the fake on a free loopback port in the current
  event loop, and `main`, which serves it from the command line:
  python -m tests.fake_cashfree --port 8090 --client-id test-client --client-secret test-secret

Amounts are Decimals end to end: a request's JSON is parsed with its numbers as written,
and responses and webhooks write them back as JSON numbers (webhooks with two decimals).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import html
import itertools
import json
import random
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn
from urllib.parse import parse_qs, quote

import httpx
import msgspec
import uvicorn
from litestar import Litestar, MediaType, Request, Response, Router, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.exceptions import HTTPException

__all__ = [
    "CashfreeError",
    "FakeCashfree",
    "Order",
    "RecordedRequest",
    "Transfer",
    "WebhookDelivery",
    "main",
    "payment_webhook_body",
    "payout_webhook_body",
    "serve_fake_cashfree",
    "sign",
    "signed_headers",
]

ORDERS_MAX = 10_000  # past this the oldest order is forgotten
TRANSFERS_MAX = 10_000  # past this the oldest transfer is forgotten
REQUESTS_KEPT = 1_000
DELIVERIES_KEPT = 1_000
BODY_BYTES_MAX = 64 * 1024
TEXT_CHARS_MAX = 200
URL_CHARS_MAX = 2_048
AMOUNT_TEXT_CHARS_MAX = 24
AMOUNT_MIN = Decimal("1")
AMOUNT_MAX = Decimal("100000000")
CENT = Decimal("0.01")
WEBHOOK_TIMEOUT_S = 10.0
WEBHOOK_VERSION = "2023-08-01"
SERVER_START_POLLS_MAX = 1_000
ORDER_LIFETIME = timedelta(days=30)
IST = timezone(timedelta(hours=5, minutes=30))
CURRENCY = "INR"
HOST = "127.0.0.1"
DEFAULT_PORT = 8090
DEFAULT_CLIENT_ID = "test-client"
DEFAULT_CLIENT_SECRET = "test-secret"

ORDER_ID = re.compile(r"[A-Za-z0-9_-]{3,45}")
TRANSFER_ID = re.compile(r"[A-Za-z0-9_]{1,40}")
HTTP_URL = re.compile(r"https?://\S+")

PAYMENT_OUTCOMES = ("SUCCESS", "FAILED", "USER_DROPPED")
PAYMENT_MESSAGES = {
    "SUCCESS": "00::Transaction success",
    "FAILED": "05::Transaction declined by the bank",
    "USER_DROPPED": "The customer left the payment page",
}
SETTLE_STATUSES = ("SUCCESS", "FAILED", "REJECTED", "REVERSED")
AUTO_SETTLE_STATUSES = ("SUCCESS", "FAILED", "REJECTED")
# Which status a transfer may move to from which: a reversal follows a success.
SETTLE_FROM = {
    "SUCCESS": ("RECEIVED", "PENDING"),
    "FAILED": ("RECEIVED", "PENDING"),
    "REJECTED": ("RECEIVED", "PENDING"),
    "REVERSED": ("SUCCESS",),
}
TRANSFER_STATUS_CODES = {
    "RECEIVED": ("RECEIVED", "The transfer has been received."),
    "PENDING": ("PENDING", "The transfer is being processed."),
    "SUCCESS": ("COMPLETED", "The transfer has been credited to the beneficiary."),
    "FAILED": ("INVALID_ACCOUNT_FAIL", "The beneficiary account is invalid."),
    "REJECTED": ("INSUFFICIENT_BALANCE", "The account has too little balance."),
    "REVERSED": ("REVERSED", "The beneficiary bank reversed the transfer."),
}
TRANSFER_MODES = frozenset(
    {"banktransfer", "imps", "neft", "rtgs", "upi", "paytm", "amazonpay", "card", "cardupi"}
)
CUSTOMER_FIELDS = (
    "customer_id",
    "customer_name",
    "customer_email",
    "customer_phone",
    "customer_uid",
    "customer_bank_account_number",
    "customer_bank_ifsc",
    "customer_bank_code",
)
CUSTOMER_FIELDS_SHOWN = CUSTOMER_FIELDS[:5]  # in every order entity, null when not given
BENEFICIARY_FIELDS = (
    "beneficiary_id",
    "beneficiary_name",
    "beneficiary_email",
    "beneficiary_phone",
)
INSTRUMENT_FIELDS = ("bank_account_number", "bank_ifsc", "vpa")
CONFIG_FIELDS = frozenset({"unavailable", "payout_webhook_url", "auto_settle_transfers"})
ERROR_CODES = {
    400: "request_invalid",
    401: "request_failed",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}

_ENCODER = msgspec.json.Encoder(decimal_format="number")
_numbers = itertools.count(random.randrange(1_000_000_000, 5_000_000_000))


class CashfreeError(Exception):
    """A refusal, answered as Cashfree does: status and {"message", "code", "type"}."""

    def __init__(
        self, status: int, code: str, message: str, kind: str = "invalid_request_error"
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.kind = kind

    def body(self) -> dict[str, str]:
        return {"message": self.message, "code": self.code, "type": self.kind}


def invalid(code: str, message: str) -> CashfreeError:
    return CashfreeError(400, code, message)


def missing(field_name: str) -> CashfreeError:
    return invalid(f"{field_name}_missing", f"{field_name} : is missing in the request")


# -- values ------------------------------------------------------------------------------


def new_number() -> str:
    """A fresh id of digits, as Cashfree's own ids are."""
    return str(next(_numbers))


def now_ist() -> datetime:
    return datetime.now(IST).replace(microsecond=0)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object with its non-integer numbers as Decimals, exactly as written."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise invalid("request_invalid", f"the body is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise invalid("request_invalid", "the body must be a JSON object")
    return value


def parse_amount(value: object, field_name: str) -> Decimal:
    """A JSON number of rupees, at least 1, with at most two decimals."""
    if value is None:
        raise missing(field_name)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise invalid(f"{field_name}_invalid", f"{field_name} : must be a number")
    amount = Decimal(value)
    if not AMOUNT_MIN <= amount <= AMOUNT_MAX or amount != amount.quantize(CENT):
        raise invalid(
            f"{field_name}_invalid",
            f"{field_name} : must be between {AMOUNT_MIN} and {AMOUNT_MAX}, two decimals at most",
        )
    return amount


def rupees(value: str | Decimal) -> Decimal:
    """Rupees written as text (or a Decimal), to two decimals; ValueError if not."""
    if isinstance(value, str):
        if len(value) > AMOUNT_TEXT_CHARS_MAX:
            raise ValueError("amount too long")
        try:
            value = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not an amount: {value!r}") from None
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    if not 0 <= value <= AMOUNT_MAX or value != value.quantize(CENT):
        raise ValueError(f"not an amount of rupees with two decimals at most: {value}")
    return value.quantize(CENT)


def text(value: object, field_name: str, *, limit: int = TEXT_CHARS_MAX) -> str:
    """A non-empty string of at most `limit` characters."""
    if not isinstance(value, str) or not value or len(value) > limit:
        raise invalid(f"{field_name}_invalid", f"{field_name} : must be a string of 1 to {limit}")
    return value


def optional_text(value: object, field_name: str, *, limit: int = TEXT_CHARS_MAX) -> str | None:
    return None if value is None else text(value, field_name, limit=limit)


def optional_url(value: object, field_name: str) -> str | None:
    url = optional_text(value, field_name, limit=URL_CHARS_MAX)
    if url is not None and not HTTP_URL.fullmatch(url):
        raise invalid(f"{field_name}_invalid", f"{field_name} : must be an http(s) URL")
    return url


def mapping(value: object, field_name: str) -> dict[str, Any]:
    if value is None:
        raise missing(field_name)
    if not isinstance(value, dict):
        raise invalid(f"{field_name}_invalid", f"{field_name} : must be an object")
    return value


# -- webhooks ----------------------------------------------------------------------------


def sign(secret: str, timestamp_ms: str, body: bytes) -> str:
    """Cashfree's webhook signature: base64(HMAC-SHA256(secret, timestamp + raw body))."""
    digest = hmac.new(secret.encode(), timestamp_ms.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_headers(secret: str, body: bytes, timestamp_ms: int | None = None) -> dict[str, str]:
    """The headers of a webhook with this raw body, signed now (or at `timestamp_ms`)."""
    timestamp = str(time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms)
    return {
        "content-type": "application/json",
        "x-webhook-timestamp": timestamp,
        "x-webhook-signature": sign(secret, timestamp, body),
        "x-webhook-version": WEBHOOK_VERSION,
    }


def _payment_section(
    outcome: str, amount: Decimal, currency: str, cf_payment_id: str, moment: datetime
) -> dict[str, Any]:
    return {
        "cf_payment_id": cf_payment_id,
        "payment_status": outcome,
        "payment_amount": amount,
        "payment_currency": currency,
        "payment_message": PAYMENT_MESSAGES[outcome],
        "payment_time": moment.isoformat(),
        "bank_reference": new_number() if outcome == "SUCCESS" else None,
        "auth_id": None,
        "payment_method": {"upi": {"channel": "collect", "upi_id": "test@upi"}},
        "payment_group": "upi",
    }


def _gateway_section(cf_order_id: str | None, cf_payment_id: str) -> dict[str, Any]:
    return {
        "gateway_name": "CASHFREE",
        "gateway_order_id": cf_order_id,
        "gateway_payment_id": cf_payment_id,
        "gateway_order_reference_id": None,
        "gateway_settlement": "CASHFREE",
        "gateway_status_code": None,
    }


def payment_webhook_body(
    order_id: str,
    *,
    outcome: str = "SUCCESS",
    amount: str | Decimal,
    currency: str = CURRENCY,
    cf_payment_id: str | None = None,
    order_amount: str | Decimal | None = None,
    customer_details: Mapping[str, Any] | None = None,
    cf_order_id: str | None = None,
) -> bytes:
    """The raw body of a Payment Gateway webhook (2023-08-01) for one payment attempt.

    Amounts are rupees as text, written as JSON numbers with two decimals; the order's
    amount defaults to the payment's.
    """
    if outcome not in PAYMENT_OUTCOMES:
        raise ValueError(f"outcome must be one of {PAYMENT_OUTCOMES}, not {outcome!r}")
    paid = rupees(amount)
    cf_payment_id = cf_payment_id or new_number()
    moment = now_ist()
    customer: dict[str, Any] = dict.fromkeys(
        ("customer_name", "customer_id", "customer_email", "customer_phone")
    )
    customer.update(customer_details or {})
    body = {
        "data": {
            "order": {
                "order_id": order_id,
                "order_amount": paid if order_amount is None else rupees(order_amount),
                "order_currency": currency,
                "order_tags": None,
            },
            "payment": _payment_section(outcome, paid, currency, cf_payment_id, moment),
            "customer_details": customer,
            "payment_gateway_details": _gateway_section(cf_order_id, cf_payment_id),
        },
        "event_time": moment.isoformat(),
        "type": f"PAYMENT_{outcome}_WEBHOOK",
    }
    return _ENCODER.encode(body)


def payout_webhook_body(
    transfer_id: str,
    *,
    status: str = "SUCCESS",
    cf_transfer_id: str,
    amount: str | Decimal,
    transfer_mode: str = "banktransfer",
    transfer_utr: str | None = None,
    added_on: str | None = None,
) -> bytes:
    """The raw body of a Payouts V2 transfer webhook; the amount (rupees) is written
    as a JSON number with two decimals."""
    if status not in SETTLE_STATUSES:
        raise ValueError(f"status must be one of {SETTLE_STATUSES}, not {status!r}")
    status_code, description = TRANSFER_STATUS_CODES[status]
    moment = now_ist().isoformat()
    if transfer_utr is None and status in ("SUCCESS", "REVERSED"):
        transfer_utr = "N" + new_number()
    body = {
        "type": f"TRANSFER_{status}",
        "event_time": moment,
        "data": {
            "transfer_id": transfer_id,
            "cf_transfer_id": cf_transfer_id,
            "status": status,
            "status_code": status_code,
            "status_description": description,
            "transfer_amount": rupees(amount),
            "transfer_mode": transfer_mode,
            "transfer_utr": transfer_utr,
            "added_on": added_on or moment,
            "updated_on": moment,
        },
    }
    return _ENCODER.encode(body)


@dataclass
class WebhookDelivery:
    """One webhook sent: where, the raw body and headers, and the answer's status (None
    when it could not be delivered; `error` says why)."""

    url: str
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "body": self.body.decode(),
            "error": self.error,
        }


# -- entities ----------------------------------------------------------------------------


@dataclass
class Order:
    order_id: str
    cf_order_id: str
    order_amount: Decimal
    order_currency: str
    customer_details: dict[str, Any]
    order_meta: dict[str, Any]
    order_note: str | None
    order_tags: dict[str, str] | None
    payment_session_id: str = field(default_factory=lambda: "session_" + secrets.token_urlsafe(48))
    created_at: datetime = field(default_factory=now_ist)
    order_status: str = "ACTIVE"

    def entity(self) -> dict[str, Any]:
        return {
            "cf_order_id": self.cf_order_id,
            "order_id": self.order_id,
            "entity": "order",
            "order_amount": self.order_amount,
            "order_currency": self.order_currency,
            "order_status": self.order_status,
            "payment_session_id": self.payment_session_id,
            "order_expiry_time": (self.created_at + ORDER_LIFETIME).isoformat(),
            "order_note": self.order_note,
            "order_tags": self.order_tags,
            "order_splits": [],
            "order_meta": self.order_meta,
            "customer_details": self.customer_details,
            "created_at": self.created_at.isoformat(),
        }

    def return_url(self) -> str | None:
        url = self.order_meta.get("return_url")
        return url.replace("{order_id}", quote(self.order_id)) if url else None


@dataclass
class Transfer:
    transfer_id: str
    cf_transfer_id: str
    transfer_amount: Decimal
    transfer_mode: str
    beneficiary_details: dict[str, Any]
    status: str = "RECEIVED"
    transfer_utr: str | None = None
    added_on: datetime = field(default_factory=now_ist)
    updated_on: datetime = field(default_factory=now_ist)

    def entity(self) -> dict[str, Any]:
        status_code, description = TRANSFER_STATUS_CODES[self.status]
        return {
            "transfer_id": self.transfer_id,
            "cf_transfer_id": self.cf_transfer_id,
            "status": self.status,
            "status_code": status_code,
            "status_description": description,
            "beneficiary_details": self.beneficiary_details,
            "transfer_amount": self.transfer_amount,
            "transfer_service_charge": None,
            "transfer_service_tax": None,
            "transfer_mode": self.transfer_mode,
            "transfer_utr": self.transfer_utr,
            "fundsource_id": None,
            "added_on": self.added_on.isoformat(),
            "updated_on": self.updated_on.isoformat(),
        }

    def webhook_body(self) -> bytes:
        return payout_webhook_body(
            self.transfer_id,
            status=self.status,
            cf_transfer_id=self.cf_transfer_id,
            amount=self.transfer_amount,
            transfer_mode=self.transfer_mode,
            transfer_utr=self.transfer_utr,
            added_on=self.added_on.isoformat(),
        )


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode(errors="replace"),
        }


# -- requests' bodies --------------------------------------------------------------------


def customer_details_of(value: object) -> dict[str, Any]:
    details = mapping(value, "customer_details")
    for required in ("customer_id", "customer_phone"):
        if details.get(required) is None:
            raise missing(required)
    shown: dict[str, Any] = dict.fromkeys(CUSTOMER_FIELDS_SHOWN)
    for name in CUSTOMER_FIELDS:
        if details.get(name) is not None:
            shown[name] = text(details[name], name)
    return shown


def order_meta_of(value: object) -> dict[str, Any]:
    meta = {} if value is None else mapping(value, "order_meta")
    return {
        "return_url": optional_url(meta.get("return_url"), "return_url"),
        "notify_url": optional_url(meta.get("notify_url"), "notify_url"),
        "payment_methods": optional_text(meta.get("payment_methods"), "payment_methods"),
    }


def order_tags_of(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    tags = mapping(value, "order_tags")
    return {text(key, "order_tags"): text(tag, "order_tags") for key, tag in tags.items()}


def currency_of(value: object, field_name: str, *, required: bool) -> str:
    if value is None and not required:
        return CURRENCY
    if value is None:
        raise missing(field_name)
    if value != CURRENCY:
        raise invalid(f"{field_name}_invalid", f"{field_name} : only {CURRENCY} is supported")
    return CURRENCY


def new_order(body: dict[str, Any]) -> Order:
    order_id = body.get("order_id")
    if order_id is None:
        order_id = "order_" + secrets.token_hex(12)
    elif not isinstance(order_id, str) or not ORDER_ID.fullmatch(order_id):
        raise invalid("order_id_invalid", "order_id : 3 to 45 letters, digits, '_' or '-'")
    return Order(
        order_id=order_id,
        cf_order_id=new_number(),
        order_amount=parse_amount(body.get("order_amount"), "order_amount"),
        order_currency=currency_of(body.get("order_currency"), "order_currency", required=True),
        customer_details=customer_details_of(body.get("customer_details")),
        order_meta=order_meta_of(body.get("order_meta")),
        order_note=optional_text(body.get("order_note"), "order_note"),
        order_tags=order_tags_of(body.get("order_tags")),
    )


def instrument_of(value: object) -> dict[str, Any]:
    instrument = mapping(value, "beneficiary_instrument_details")
    shown = {name: text(instrument[name], name) for name in INSTRUMENT_FIELDS if name in instrument}
    has_bank = "bank_account_number" in shown and "bank_ifsc" in shown
    if not has_bank and "vpa" not in shown:
        raise invalid(
            "beneficiary_instrument_details_invalid",
            "beneficiary_instrument_details : needs bank_account_number and bank_ifsc, or vpa",
        )
    return shown


def beneficiary_of(value: object) -> dict[str, Any]:
    details = mapping(value, "beneficiary_details")
    shown: dict[str, Any] = {
        name: text(details[name], name) for name in BENEFICIARY_FIELDS if name in details
    }
    if details.get("beneficiary_instrument_details") is not None:
        shown["beneficiary_instrument_details"] = instrument_of(
            details["beneficiary_instrument_details"]
        )
    elif "beneficiary_id" not in shown:
        raise invalid(
            "beneficiary_details_invalid",
            "beneficiary_details : needs beneficiary_id or beneficiary_instrument_details",
        )
    return shown


def new_transfer(body: dict[str, Any]) -> Transfer:
    transfer_id = body.get("transfer_id")
    if transfer_id is None:
        raise missing("transfer_id")
    if not isinstance(transfer_id, str) or not TRANSFER_ID.fullmatch(transfer_id):
        raise invalid("transfer_id_invalid", "transfer_id : 1 to 40 letters, digits or '_'")
    currency_of(body.get("transfer_currency"), "transfer_currency", required=False)
    mode = body.get("transfer_mode", "banktransfer")
    if mode not in TRANSFER_MODES:
        raise invalid("transfer_mode_invalid", f"transfer_mode : one of {sorted(TRANSFER_MODES)}")
    return Transfer(
        transfer_id=transfer_id,
        cf_transfer_id=new_number(),
        transfer_amount=parse_amount(body.get("transfer_amount"), "transfer_amount"),
        transfer_mode=mode,
        beneficiary_details=beneficiary_of(body.get("beneficiary_details")),
    )


# -- the fake ----------------------------------------------------------------------------


class FakeCashfree:
    """The fake's state and its app (`app`); `base_url` is set once it is served."""

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        *,
        payout_webhook_url: str | None = None,
        auto_settle_transfers: str | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.orders: dict[str, Order] = {}
        self.transfers: dict[str, Transfer] = {}
        self.requests: deque[RecordedRequest] = deque(maxlen=REQUESTS_KEPT)
        self.deliveries: deque[WebhookDelivery] = deque(maxlen=DELIVERIES_KEPT)
        self.unavailable = False
        self.payout_webhook_url = payout_webhook_url
        self.auto_settle_transfers = auto_settle_transfers
        self.base_url = ""
        self._sessions: dict[str, str] = {}  # payment_session_id -> order_id
        self.app = build_app(self)

    @property
    def pg_base_url(self) -> str:
        return self.base_url + "/pg"

    @property
    def payout_base_url(self) -> str:
        return self.base_url + "/payout"

    def authenticated(self, headers: Mapping[str, str]) -> bool:
        client_id = headers.get("x-client-id", "").encode()
        client_secret = headers.get("x-client-secret", "").encode()
        id_ok = hmac.compare_digest(client_id, self.client_id.encode())
        secret_ok = hmac.compare_digest(client_secret, self.client_secret.encode())
        return id_ok and secret_ok and bool(headers.get("x-api-version"))

    def add_order(self, body: dict[str, Any]) -> Order:
        order = new_order(body)
        if order.order_id in self.orders:
            raise CashfreeError(
                409, "order_already_exists", "order with same id is already present"
            )
        if len(self.orders) >= ORDERS_MAX:
            oldest = self.orders.pop(next(iter(self.orders)))
            self._sessions.pop(oldest.payment_session_id, None)
        self.orders[order.order_id] = order
        self._sessions[order.payment_session_id] = order.order_id
        return order

    def order(self, order_id: str) -> Order:
        order = self.orders.get(order_id)
        if order is None:
            raise CashfreeError(404, "order_not_found", "order not found")
        return order

    def order_by_session(self, payment_session_id: str) -> Order:
        return self.order(self._sessions.get(payment_session_id, ""))

    def add_transfer(self, body: dict[str, Any]) -> Transfer:
        transfer = new_transfer(body)
        if transfer.transfer_id in self.transfers:
            raise CashfreeError(409, "transfer_id_already_exists", "transfer_id already exists")
        if len(self.transfers) >= TRANSFERS_MAX:
            del self.transfers[next(iter(self.transfers))]
        self.transfers[transfer.transfer_id] = transfer
        return transfer

    def transfer(
        self, transfer_id: str | None = None, cf_transfer_id: str | None = None
    ) -> Transfer:
        found = self.transfers.get(transfer_id or "")
        if found is None and cf_transfer_id is not None:
            found = next(
                (t for t in self.transfers.values() if t.cf_transfer_id == cf_transfer_id), None
            )
        if found is None:
            raise CashfreeError(404, "transfer_not_found", "transfer not found")
        return found

    async def pay(
        self,
        order_id: str,
        *,
        outcome: str = "SUCCESS",
        amount: str | Decimal | None = None,
        currency: str | None = None,
        send_webhook: bool = True,
        cf_payment_id: str | None = None,
    ) -> WebhookDelivery | None:
        """One payment attempt on an active order; SUCCESS marks it PAID. The webhook goes
        to the order's notify_url, if it has one (else None is returned)."""
        order = self.order(order_id)
        if outcome not in PAYMENT_OUTCOMES:
            raise invalid("outcome_invalid", f"outcome : one of {PAYMENT_OUTCOMES}")
        if order.order_status != "ACTIVE":
            raise CashfreeError(409, "order_not_active", f"order is {order.order_status}")
        try:
            paid = order.order_amount if amount is None else rupees(amount)
        except ValueError as error:
            raise invalid("amount_invalid", str(error)) from None
        if outcome == "SUCCESS":
            order.order_status = "PAID"
        body = payment_webhook_body(
            order.order_id,
            outcome=outcome,
            amount=paid,
            currency=currency or order.order_currency,
            cf_payment_id=cf_payment_id,
            order_amount=order.order_amount,
            customer_details=order.customer_details,
            cf_order_id=order.cf_order_id,
        )
        url = order.order_meta["notify_url"]
        return await self.deliver(url, body) if send_webhook and url else None

    async def settle(
        self, transfer_id: str, status: str, *, send_webhook: bool = True
    ) -> WebhookDelivery | None:
        """The bank's outcome of a transfer; the webhook goes to `payout_webhook_url`, if
        set (else None is returned)."""
        transfer = self.transfer(transfer_id)
        if status not in SETTLE_STATUSES:
            raise invalid("status_invalid", f"status : one of {SETTLE_STATUSES}")
        if transfer.status not in SETTLE_FROM[status]:
            raise CashfreeError(
                409, "transfer_not_settleable", f"a {transfer.status} transfer cannot be {status}"
            )
        transfer.status = status
        transfer.updated_on = now_ist()
        if status == "SUCCESS":
            transfer.transfer_utr = "N" + new_number()
        url = self.payout_webhook_url
        return await self.deliver(url, transfer.webhook_body()) if send_webhook and url else None

    async def auto_settle(self, transfer_id: str, status: str) -> None:
        try:
            await self.settle(transfer_id, status)
        except CashfreeError:
            pass  # settled or forgotten in the meantime

    async def deliver(self, url: str, body: bytes) -> WebhookDelivery:
        """POST a webhook signed now; a failure is recorded in the delivery, never raised."""
        headers = signed_headers(self.client_secret, body)
        delivery = WebhookDelivery(url=url, body=body, headers=headers)
        try:
            async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as client:
                response = await client.post(url, content=body, headers=headers)
            delivery.status = response.status_code
        except Exception as error:  # any failure to deliver is the receiver's to see
            delivery.error = f"{type(error).__name__}: {error}"
        self.deliveries.append(delivery)
        return delivery

    def record(self, request: Request, body: bytes) -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(
            RecordedRequest(request.method, request.url.path, request.url.query, headers, body)
        )

    def configure(self, values: dict[str, Any]) -> None:
        """Change settings from a control request; all or nothing."""
        unknown = set(values) - CONFIG_FIELDS
        if unknown:
            raise invalid("config_invalid", f"unknown settings: {sorted(unknown)}")
        if "unavailable" in values and not isinstance(values["unavailable"], bool):
            raise invalid("config_invalid", "unavailable : must be a boolean")
        url = values.get("payout_webhook_url")
        if url is not None and not (isinstance(url, str) and HTTP_URL.fullmatch(url)):
            raise invalid("config_invalid", "payout_webhook_url : must be an http(s) URL or null")
        auto = values.get("auto_settle_transfers")
        if auto is not None and auto not in AUTO_SETTLE_STATUSES:
            raise invalid("config_invalid", f"auto_settle_transfers : {AUTO_SETTLE_STATUSES}")
        for name, value in values.items():
            setattr(self, name, value)

    def config(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in sorted(CONFIG_FIELDS)}

    def state(self) -> dict[str, Any]:
        return {
            "config": self.config(),
            "orders": [order.entity() for order in self.orders.values()],
            "transfers": [transfer.entity() for transfer in self.transfers.values()],
            "requests": [request.to_json() for request in self.requests],
            "deliveries": [delivery.to_json() for delivery in self.deliveries],
        }


# -- the HTTP app ------------------------------------------------------------------------


def json_response(
    content: object, status: int = 200, background: BackgroundTask | None = None
) -> Response[bytes]:
    return Response(
        _ENCODER.encode(content),
        status_code=status,
        media_type=MediaType.JSON,
        background=background,
    )


def html_response(title: str, body: str, status: int = 200) -> Response[str]:
    page = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )
    return Response(page, status_code=status, media_type=MediaType.HTML)


def fake_of(request: Request) -> FakeCashfree:
    return request.app.state.fake


async def guard_api(request: Request) -> Response[bytes] | None:
    """Before every API request: record it, then refuse it when down or unauthenticated."""
    fake = fake_of(request)
    fake.record(request, await request.body())
    if fake.unavailable:
        raise CashfreeError(503, "service_unavailable", "service unavailable", "api_error")
    if not fake.authenticated(request.headers):
        raise CashfreeError(401, "request_failed", "authentication Failed", "authentication_error")
    return None


@post("/orders")
async def create_order(request: Request) -> Response[bytes]:
    order = fake_of(request).add_order(parse_json_object(await request.body()))
    return json_response(order.entity())


@get("/orders/{order_id:str}")
async def get_order(request: Request, order_id: str) -> Response[bytes]:
    return json_response(fake_of(request).order(order_id).entity())


@post("/transfers")
async def create_transfer(request: Request) -> Response[bytes]:
    fake = fake_of(request)
    transfer = fake.add_transfer(parse_json_object(await request.body()))
    status = fake.auto_settle_transfers
    background = BackgroundTask(fake.auto_settle, transfer.transfer_id, status) if status else None
    return json_response(transfer.entity(), background=background)


@get("/transfers")
async def get_transfer(request: Request) -> Response[bytes]:
    transfer_id = request.query_params.get("transfer_id")
    cf_transfer_id = request.query_params.get("cf_transfer_id")
    if not transfer_id and not cf_transfer_id:
        raise missing("transfer_id")
    return json_response(fake_of(request).transfer(transfer_id, cf_transfer_id).entity())


def control_flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, True)
    if not isinstance(value, bool):
        raise invalid(f"{name}_invalid", f"{name} : must be a boolean")
    return value


@post("/orders/{order_id:str}/pay")
async def control_pay(request: Request, order_id: str) -> Response[bytes]:
    fake = fake_of(request)
    body = parse_json_object(await request.body())
    delivery = await fake.pay(
        order_id,
        outcome=body.get("outcome", "SUCCESS"),
        amount=body.get("amount"),
        currency=optional_text(body.get("currency"), "currency"),
        send_webhook=control_flag(body, "send_webhook"),
        cf_payment_id=optional_text(body.get("cf_payment_id"), "cf_payment_id"),
    )
    webhook = None if delivery is None else delivery.to_json()
    return json_response({"order": fake.order(order_id).entity(), "webhook": webhook})


@post("/transfers/{transfer_id:str}/settle")
async def control_settle(request: Request, transfer_id: str) -> Response[bytes]:
    fake = fake_of(request)
    body = parse_json_object(await request.body())
    delivery = await fake.settle(
        transfer_id, body.get("status") or "", send_webhook=control_flag(body, "send_webhook")
    )
    webhook = None if delivery is None else delivery.to_json()
    return json_response({"transfer": fake.transfer(transfer_id).entity(), "webhook": webhook})


@post("/config")
async def control_config(request: Request) -> Response[bytes]:
    fake = fake_of(request)
    fake.configure(parse_json_object(await request.body()))
    return json_response(fake.config())


@get("/state")
async def control_state(request: Request) -> Response[bytes]:
    return json_response(fake_of(request).state())


def checkout_page(order: Order) -> Response[str]:
    order_id = html.escape(order.order_id)
    amount = html.escape(f"{order.order_amount} {order.order_currency}")
    if order.order_status != "ACTIVE":
        return html_response("Checkout", f"<p>Order {order_id} is {order.order_status}.</p>")
    action = "/_fake/checkout/" + quote(order.payment_session_id, safe="")
    return html_response(
        "Checkout",
        f"<h1>Pay {amount}</h1><p>Order <code>{order_id}</code></p>"
        f'<form method="post" action="{html.escape(action)}">'
        '<button type="submit" name="outcome" value="SUCCESS">Pay</button> '
        '<button type="submit" name="outcome" value="FAILED">Fail</button></form>',
    )


@get("/checkout")
async def checkout(request: Request) -> Response[str]:
    session = request.query_params.get("payment_session_id", "")
    try:
        order = fake_of(request).order_by_session(session)
    except CashfreeError:
        return html_response("Checkout", "<p>No order has this payment session.</p>", 404)
    return checkout_page(order)


@post("/checkout/{payment_session_id:str}")
async def checkout_submit(request: Request, payment_session_id: str) -> Response[str]:
    fake = fake_of(request)
    form = parse_qs((await request.body()).decode(errors="replace"))
    outcome = form.get("outcome", ["SUCCESS"])[0]
    try:
        order = fake.order_by_session(payment_session_id)
        await fake.pay(order.order_id, outcome=outcome)
    except CashfreeError as error:
        return html_response("Checkout", f"<p>{html.escape(error.message)}</p>", error.status)
    url = order.return_url()
    if url is not None:
        return Response("", status_code=303, headers={"location": url})
    status = html.escape(f"{outcome}: order {order.order_id} is {order.order_status}")
    return html_response("Done", f"<p>Done. {status}.</p>")


def cashfree_error_response(request: Request, error: CashfreeError) -> Response[bytes]:
    return json_response(error.body(), error.status)


def http_error_response(request: Request, error: HTTPException) -> Response[bytes]:
    status = error.status_code
    kind = "api_error" if status >= 500 else "invalid_request_error"
    body = {"message": str(error.detail), "code": ERROR_CODES.get(status, "request_failed")}
    return json_response({**body, "type": kind}, status)


def internal_error_response(request: Request, error: Exception) -> Response[bytes]:
    body = {"message": f"internal error: {error}", "code": "internal_error", "type": "api_error"}
    return json_response(body, 500)


def build_app(fake: FakeCashfree) -> Litestar:
    return Litestar(
        route_handlers=[
            Router("/pg", route_handlers=[create_order, get_order], before_request=guard_api),
            Router(
                "/payout",
                route_handlers=[create_transfer, get_transfer],
                before_request=guard_api,
            ),
            Router(
                "/_fake",
                route_handlers=[
                    control_pay,
                    control_settle,
                    control_config,
                    control_state,
                    checkout_submit,
                ],
            ),
            checkout,
        ],
        exception_handlers={
            CashfreeError: cashfree_error_response,
            HTTPException: http_error_response,
            Exception: internal_error_response,
        },
        request_max_body_size=BODY_BYTES_MAX,
        openapi_config=None,
        state=State({"fake": fake}),
    )


# -- serving -----------------------------------------------------------------------------


def server_config(fake: FakeCashfree, log_level: str = "warning", **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        fake.app, lifespan="on", log_level=log_level, access_log=log_level == "info", **options
    )


@asynccontextmanager
async def serve_fake_cashfree(
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
    *,
    payout_webhook_url: str | None = None,
    auto_settle_transfers: str | None = None,
) -> AsyncIterator[FakeCashfree]:
    """Serve a new fake on a free loopback port in this event loop, for the block."""
    fake = FakeCashfree(
        client_id,
        client_secret,
        payout_webhook_url=payout_webhook_url,
        auto_settle_transfers=auto_settle_transfers,
    )
    sock = socket.socket()
    sock.bind((HOST, 0))  # bound here, so the port is ours before uvicorn listens
    port = sock.getsockname()[1]
    # Idle connections outlive the clients' keep-alive (httpx's is 5 s), as in tests/conftest.py.
    server = uvicorn.Server(server_config(fake, timeout_keep_alive=60))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(SERVER_START_POLLS_MAX):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError("the fake Cashfree did not start")
        fake.base_url = f"http://{HOST}:{port}"
        yield fake
    finally:
        server.should_exit = True
        await task
        sock.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_cashfree",
        description="Serve a fake Cashfree (PG orders, Payouts V2, signed webhooks).",
    )
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--payout-webhook-url", default=None)
    parser.add_argument("--auto-settle-transfers", choices=AUTO_SETTLE_STATUSES, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    fake = FakeCashfree(
        args.client_id,
        args.client_secret,
        payout_webhook_url=args.payout_webhook_url,
        auto_settle_transfers=args.auto_settle_transfers,
    )
    fake.base_url = f"http://{args.host}:{args.port}"
    print(f"fake Cashfree: PG at {fake.pg_base_url}, payouts at {fake.payout_base_url}")
    print(f"checkout: {fake.base_url}/checkout?payment_session_id=...", flush=True)
    uvicorn.Server(server_config(fake, host=args.host, port=args.port, log_level="info")).run()


if __name__ == "__main__":
    main()
