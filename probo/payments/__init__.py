"""Payment providers behind one interface (SPEC §11): `simulated` for dev and tests,
`cashfree` over its REST API, and Cashfree's signed webhooks read into typed events.
Money itself moves in probo/wallet, which uses this package."""

from probo.payments.cashfree import CashfreeProvider
from probo.payments.simulated import SimulatedProvider
from probo.payments.types import (
    CURRENCY,
    OrderRequest,
    PaymentProvider,
    PayoutRequest,
    PayoutState,
    ProviderOrder,
    ProviderRefused,
    ProviderUnavailable,
    paise_of,
    rupees,
)
from probo.payments.webhooks import (
    WEBHOOK_AGE_MAX_MS,
    PaymentEvent,
    PayoutEvent,
    WebhookMalformed,
    payment_event,
    payout_event,
    signature_valid,
)

__all__ = [
    "CURRENCY",
    "WEBHOOK_AGE_MAX_MS",
    "CashfreeProvider",
    "OrderRequest",
    "PaymentEvent",
    "PaymentProvider",
    "PayoutEvent",
    "PayoutRequest",
    "PayoutState",
    "ProviderOrder",
    "ProviderRefused",
    "ProviderUnavailable",
    "SimulatedProvider",
    "WebhookMalformed",
    "paise_of",
    "payment_event",
    "payout_event",
    "rupees",
    "signature_valid",
]
