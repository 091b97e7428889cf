"""Commands that mirror outside credits into the engine (SPEC §4).

Credits from outside trading (signup bonus, referral bonus, deposits, withdrawals
returned by a failed or rejected payout) commit in
Postgres first; each one is then handed to the engine as one of these commands. The
ledger transfer id makes every command idempotent.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from probo.web import ApiError

CreditCommand = Literal["INIT_BALANCE", "REFERRAL_CREDIT", "DEPOSIT", "WITHDRAWAL_REVERSAL"]


class CreateUser(msgspec.Struct, frozen=True):
    user_id: int


class EngineCredit(msgspec.Struct, frozen=True):
    command: CreditCommand
    transfer_id: int
    user_id: int
    amount: int


class EngineUnavailable(ApiError):
    """The engine cannot take commands now (recovering, or rebuilding): 503, retry soon."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(503, "unavailable", message, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s
