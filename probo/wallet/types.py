"""Wire types of the wallet API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from probo.infra import DEPOSIT_AMOUNT_MAX, DEPOSIT_AMOUNT_MIN
from probo.web import StorableText

WITHDRAWAL_AMOUNT_MIN = 100  # paise, like the smallest deposit

IdempotencyKey = Annotated[StorableText, msgspec.Meta(min_length=1, max_length=128)]
DepositAmount = Annotated[
    int,
    msgspec.Meta(ge=DEPOSIT_AMOUNT_MIN, le=DEPOSIT_AMOUNT_MAX, description="paise"),
]
WithdrawalAmount = Annotated[
    int,
    msgspec.Meta(
        ge=WITHDRAWAL_AMOUNT_MIN,
        le=DEPOSIT_AMOUNT_MAX,
        description="paise; at most what is available (else 422 insufficient_funds)",
    ),
]


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
    amount: DepositAmount
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
    amount: WithdrawalAmount
    idempotency_key: IdempotencyKey


class Withdrawal(msgspec.Struct):
    id: int
    amount: int
    status: Literal["completed"]
    idempotency_key: str
    created_at: datetime
