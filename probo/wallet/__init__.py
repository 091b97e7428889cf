"""Balances seen by users, history, deposits and withdrawals through a payment
provider, and the provider's webhooks."""

from probo.wallet import admin, api, webhooks
from probo.wallet.api import dependencies
from probo.wallet.reconciler import run_payments_reconciler
from probo.wallet.service import WalletService
from probo.wallet.types import WalletTransaction

route_handlers = [*api.route_handlers, *admin.route_handlers, *webhooks.route_handlers]

__all__ = [
    "WalletService",
    "dependencies",
    "route_handlers",
    "run_payments_reconciler",
    "WalletTransaction",
]
