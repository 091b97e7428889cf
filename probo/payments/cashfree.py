"""Cashfree over its REST API (httpx): the Orders API of its Payment Gateway for money
in, Payouts V2 transfers for money out. Authenticated by the `x-client-id`,
`x-client-secret` and `x-api-version` headers; amounts are rupees with two decimals.

Every call is idempotent by our id (`order_id`, `transfer_id`): creating one that
already exists (409) reads it instead, so a call retried after a lost answer never
makes a second order or a second payout.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import msgspec
from loguru import logger

from probo.payments.types import (
    CURRENCY,
    OrderRequest,
    PayoutRequest,
    PayoutState,
    ProviderOrder,
    ProviderRefused,
    ProviderUnavailable,
    paise_of,
    rupees,
)

PG_API_VERSION = "2023-08-01"
PAYOUT_API_VERSION = "2024-01-01"
CASHFREE_TIMEOUT_S = 10.0
CASHFREE_CONNECTIONS_MAX = 20
# An unpaid order expires: the reconciler then fails its deposit instead of asking forever.
ORDER_EXPIRY = timedelta(days=1)

ORDER_STATES = {"ACTIVE": "open", "PAID": "paid"}  # any other status: it cannot be paid
PAYOUT_SUCCEEDED = {"SUCCESS"}
PAYOUT_FAILED = {"FAILED", "REJECTED", "REVERSED", "MANUALLY_REJECTED"}


# Only what we read; a field Cashfree leaves out falls back to what we asked for.
class _Order(msgspec.Struct):
    order_id: str | None = None
    order_status: str = "ACTIVE"
    order_amount: Decimal | None = None
    order_currency: str = CURRENCY
    payment_session_id: str | None = None


class _Transfer(msgspec.Struct):
    transfer_id: str | None = None
    status: str = "RECEIVED"
    cf_transfer_id: str | int | None = None
    status_description: str | None = None


T = TypeVar("T")

_encoder = msgspec.json.Encoder(decimal_format="number")


class CashfreeProvider:
    name = "cashfree"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        pg_base_url: str,
        payout_base_url: str,
    ) -> None:
        self._pg_base_url = pg_base_url.rstrip("/")
        self._payout_base_url = payout_base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            headers={"x-client-id": client_id, "x-client-secret": client_secret},
            timeout=CASHFREE_TIMEOUT_S,
            limits=httpx.Limits(max_connections=CASHFREE_CONNECTIONS_MAX),
        )

    async def close(self) -> None:
        await self._http.aclose()

    # --- money in -----------------------------------------------------------------------------

    async def open_order(self, order: OrderRequest) -> ProviderOrder:
        body = {
            "order_id": order.order_id,
            "order_amount": rupees(order.amount),
            "order_currency": CURRENCY,
            "customer_details": {
                "customer_id": f"probo_user_{order.user_id}",
                "customer_phone": _national_number(order.phone),
            },
            "order_meta": {"notify_url": order.notify_url, "return_url": order.return_url},
            "order_note": "Probo wallet deposit",
            "order_expiry_time": (datetime.now(UTC) + ORDER_EXPIRY).isoformat(timespec="seconds"),
        }
        response = await self._call("POST", f"{self._pg_base_url}/orders", PG_API_VERSION, body)
        if response.status_code == 409:  # made before, its answer lost: read it
            known = await self.order(order.order_id)
            if known is None:
                raise ProviderUnavailable(f"order {order.order_id} exists but cannot be read")
            return known
        _refuse_unless_ok(response, "create order")
        return _provider_order(_decoded(response, _Order), order.order_id, order.amount)

    async def order(self, order_id: str) -> ProviderOrder | None:
        response = await self._call("GET", f"{self._pg_base_url}/orders/{order_id}", PG_API_VERSION)
        if response.status_code == 404:
            return None
        _refuse_unless_ok(response, "get order")
        return _provider_order(_decoded(response, _Order), order_id, None)

    # --- money out ----------------------------------------------------------------------------

    async def send_payout(self, payout: PayoutRequest) -> PayoutState:
        body = {
            "transfer_id": payout.transfer_id,
            "transfer_amount": rupees(payout.amount),
            "transfer_currency": CURRENCY,
            "transfer_mode": "banktransfer",
            "beneficiary_details": {
                "beneficiary_id": f"probo_user_{payout.user_id}",
                "beneficiary_name": payout.name,
                "beneficiary_instrument_details": {
                    "bank_account_number": payout.bank_account,
                    "bank_ifsc": payout.ifsc,
                },
            },
        }
        url = f"{self._payout_base_url}/transfers"
        response = await self._call("POST", url, PAYOUT_API_VERSION, body)
        if response.status_code == 409:
            known = await self.payout(payout.transfer_id)
            if known is None:
                raise ProviderUnavailable(
                    f"transfer {payout.transfer_id} exists but cannot be read"
                )
            return known
        _refuse_unless_ok(response, "create transfer")
        return _payout_state(_decoded(response, _Transfer), payout.transfer_id)

    async def payout(self, transfer_id: str) -> PayoutState | None:
        response = await self._call(
            "GET",
            f"{self._payout_base_url}/transfers",
            PAYOUT_API_VERSION,
            params={"transfer_id": transfer_id},
        )
        if response.status_code == 404:
            return None
        _refuse_unless_ok(response, "get transfer")
        return _payout_state(_decoded(response, _Transfer), transfer_id)

    # --- transport ----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        url: str,
        api_version: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {"x-api-version": api_version}
        content = None
        if body is not None:
            content = _encoder.encode(body)
            headers["content-type"] = "application/json"
        try:
            response = await self._http.request(
                method, url, content=content, headers=headers, params=params
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"Cashfree unreachable: {exc!r}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderUnavailable(f"Cashfree answered {response.status_code}")
        return response


def _refuse_unless_ok(response: httpx.Response, what: str) -> None:
    if 200 <= response.status_code < 300:
        return
    message = f"Cashfree refused to {what}: {response.status_code} {response.text[:300]}"
    if response.status_code in (401, 403):
        logger.critical("{} (check PROBO_CASHFREE_CLIENT_ID and _SECRET)", message)
    else:
        logger.error(message)
    raise ProviderRefused(message)


def _decoded(response: httpx.Response, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(response.content, type=kind)
    except msgspec.MsgspecError as exc:
        raise ProviderUnavailable(f"Cashfree answered an unreadable body: {exc}") from None


def _provider_order(order: _Order, order_id: str, asked_amount: int | None) -> ProviderOrder:
    amount = asked_amount if order.order_amount is None else paise_of(order.order_amount)
    if amount is None and order.order_amount is not None:
        raise ProviderUnavailable(f"Cashfree answered an amount of {order.order_amount} rupees")
    state = ORDER_STATES.get(order.order_status, "failed")
    return ProviderOrder(
        order_id=order.order_id or order_id,
        state=state,  # type: ignore[arg-type]
        amount=amount,
        currency=order.order_currency,
        payment_session_id=order.payment_session_id,
        reason=None if state != "failed" else f"order {order.order_status.lower()}",
    )


def _payout_state(transfer: _Transfer, transfer_id: str) -> PayoutState:
    if transfer.status in PAYOUT_SUCCEEDED:
        state = "completed"
    elif transfer.status in PAYOUT_FAILED:
        state = "failed"
    else:
        state = "sent"
    return PayoutState(
        transfer_id=transfer.transfer_id or transfer_id,
        state=state,  # type: ignore[arg-type]
        reference=None if transfer.cf_transfer_id is None else str(transfer.cf_transfer_id),
        reason=transfer.status_description if state == "failed" else None,
    )


def _national_number(phone: str) -> str:
    """Cashfree takes Indian numbers as 10 digits; others as digits with the country code."""
    return phone.removeprefix("+91") if phone.startswith("+91") else phone.lstrip("+")
