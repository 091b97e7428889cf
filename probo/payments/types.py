"""What a payment provider is asked and answers, in our terms: orders (money in),
payouts (money out), and the two ways a call can fail."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, Protocol

import msgspec

PAISE_PER_RUPEE = 100
CURRENCY = "INR"


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered 5xx: the outcome is unknown."""


class ProviderRefused(Exception):
    """The provider understood the request and refused it (bad credentials, invalid
    request): retrying the same call will not help."""


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str  # ours: one provider order is one deposit
    amount: int  # paise
    user_id: int
    phone: str
    notify_url: str
    return_url: str


class ProviderOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order as the provider holds it. `open`: waiting for the payer; `paid`: the
    money arrived; `failed`: it can no longer be paid (declined, expired, terminated)."""

    order_id: str
    state: Literal["open", "paid", "failed"]
    amount: int | None  # paise; None when the provider did not say
    currency: str
    payment_session_id: str | None = None
    reason: str | None = None


class PayoutRequest(msgspec.Struct, frozen=True, kw_only=True):
    transfer_id: str  # ours: one provider transfer is one withdrawal
    amount: int  # paise
    user_id: int
    name: str
    bank_account: str
    ifsc: str


class PayoutState(msgspec.Struct, frozen=True, kw_only=True):
    """A payout as the provider holds it: `sent` (on its way), `completed` or `failed`."""

    transfer_id: str
    state: Literal["sent", "completed", "failed"]
    reference: str | None = None
    reason: str | None = None


class PaymentProvider(Protocol):
    """Money in (orders the payer completes at the provider) and out (payouts to a
    bank account). Every call is idempotent by our id, as the providers' own are."""

    name: str

    async def open_order(self, order: OrderRequest) -> ProviderOrder: ...

    async def order(self, order_id: str) -> ProviderOrder | None:
        """None: the provider has no such order."""
        ...

    async def send_payout(self, payout: PayoutRequest) -> PayoutState: ...

    async def payout(self, transfer_id: str) -> PayoutState | None:
        """None: the provider has no such payout."""
        ...

    async def close(self) -> None: ...


def rupees(paise: int) -> Decimal:
    """Paise as rupees with two decimals, as providers' APIs take amounts."""
    return Decimal(paise).scaleb(-2).quantize(Decimal("0.01"))


def paise_of(rupees_amount: Decimal) -> int | None:
    """Rupees as paise; None unless it is a whole number of paise."""
    paise = rupees_amount * PAISE_PER_RUPEE
    if not paise.is_finite() or paise != paise.to_integral_value():
        return None
    return int(paise)
