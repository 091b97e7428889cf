"""Balances seen by users, history, deposits, bonuses (withdrawals come with the engine)."""

from probo.wallet.api import dependencies, route_handlers
from probo.wallet.gateway import ChargeResult, GatewayUnavailable, PaymentGateway, SimulatedGateway
from probo.wallet.service import WalletService

__all__ = [
    "ChargeResult",
    "GatewayUnavailable",
    "PaymentGateway",
    "SimulatedGateway",
    "WalletService",
    "dependencies",
    "route_handlers",
]
