"""Payment gateways behind one interface. The simulated gateway is the default.

A gateway charge is idempotent by key, as real gateways' are: charging the same key
again returns the first outcome, so a deposit left pending by a crash can be re-driven
safely.
"""

from __future__ import annotations

import uuid
from typing import Protocol

import msgspec

SIMULATED_CHARGES_MAX = 1_000_000


class ChargeResult(msgspec.Struct, frozen=True):
    succeeded: bool
    reference: str
    failure_reason: str | None = None


class GatewayUnavailable(Exception):
    """The gateway could not be reached; the charge's outcome is unknown."""


class PaymentGateway(Protocol):
    name: str

    async def charge(self, *, user_id: int, amount: int, idempotency_key: str) -> ChargeResult: ...


class SimulatedGateway:
    """Accepts every charge, remembering outcomes by key like a real gateway."""

    name = "simulated"

    def __init__(self) -> None:
        self._results: dict[tuple[int, str], ChargeResult] = {}

    async def charge(self, *, user_id: int, amount: int, idempotency_key: str) -> ChargeResult:
        key = (user_id, idempotency_key)
        result = self._results.get(key)
        if result is None:
            if len(self._results) >= SIMULATED_CHARGES_MAX:
                self._results.clear()
            result = ChargeResult(succeeded=True, reference=f"sim_{uuid.uuid4().hex}")
            self._results[key] = result
        return result
