"""The simulated provider (dev and tests only; `prod` refuses it): every order is paid
and every payout completed the moment it is asked for, remembered by id like a real
provider's, so a repeated call returns the first answer."""

from __future__ import annotations

import uuid

from probo.payments.types import CURRENCY, OrderRequest, PayoutRequest, PayoutState, ProviderOrder

SIMULATED_REMEMBERED_MAX = 100_000  # orders and payouts kept for repeats


class SimulatedProvider:
    name = "simulated"

    def __init__(self) -> None:
        self._orders: dict[str, ProviderOrder] = {}
        self._payouts: dict[str, PayoutState] = {}

    async def open_order(self, order: OrderRequest) -> ProviderOrder:
        known = self._orders.get(order.order_id)
        if known is None:
            if len(self._orders) >= SIMULATED_REMEMBERED_MAX:
                self._orders.clear()
            known = ProviderOrder(
                order_id=order.order_id, state="paid", amount=order.amount, currency=CURRENCY
            )
            self._orders[order.order_id] = known
        return known

    async def order(self, order_id: str) -> ProviderOrder | None:
        return self._orders.get(order_id)

    async def send_payout(self, payout: PayoutRequest) -> PayoutState:
        known = self._payouts.get(payout.transfer_id)
        if known is None:
            if len(self._payouts) >= SIMULATED_REMEMBERED_MAX:
                self._payouts.clear()
            known = PayoutState(
                transfer_id=payout.transfer_id,
                state="completed",
                reference=f"sim_{uuid.uuid4().hex[:16]}",
            )
            self._payouts[payout.transfer_id] = known
        return known

    async def payout(self, transfer_id: str) -> PayoutState | None:
        return self._payouts.get(transfer_id)

    async def close(self) -> None:
        return None
