"""Wire types of the wallet API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Wallet(msgspec.Struct):
    balance: int
    locked: int
    available: int
    currency: str = "INR"


class WalletTransaction(msgspec.Struct):
    id: int
    kind: str
    amount: int  # signed: positive into this user's cash, negative out of it
    ref: str
    created_at: datetime


class TransactionPage(msgspec.Struct):
    items: list[WalletTransaction]
    next_cursor: str | None


class DepositRequest(msgspec.Struct, forbid_unknown_fields=True):
    amount: int
    idempotency_key: IdempotencyKey


class Deposit(msgspec.Struct):
    id: int
    amount: int
    status: Literal["pending", "succeeded", "failed"]
    idempotency_key: str
    gateway: str
    gateway_reference: str | None
    failure_reason: str | None
    transfer_id: int | None
    created_at: datetime
    completed_at: datetime | None


class WithdrawalRequest(msgspec.Struct, forbid_unknown_fields=True):
    amount: int
    idempotency_key: IdempotencyKey


class Withdrawal(msgspec.Struct):
    id: int
    amount: int
    status: Literal["completed"]
    idempotency_key: str
    created_at: datetime
