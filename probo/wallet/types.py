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


DepositStatus = Literal["pending", "completed", "failed", "review"]
WithdrawalStatus = Literal["pending", "processing", "completed", "failed", "rejected"]


class Checkout(msgspec.Struct):
    """What the payer's browser needs to open the provider's checkout."""

    order_id: str
    payment_session_id: str


class Deposit(msgspec.Struct):
    id: int
    amount: int
    status: DepositStatus
    provider: str
    idempotency_key: str
    created_at: datetime
    completed_at: datetime | None
    checkout: Checkout | None = None  # while the provider waits for the payer
    reason: str | None = None  # why it failed, or why it is under review
    provider_reference: str | None = None  # the provider's payment id
    transfer_id: int | None = None  # the credit, once completed


class DepositPage(msgspec.Struct):
    items: list[Deposit]
    next_cursor: str | None


class WithdrawalRequest(msgspec.Struct, forbid_unknown_fields=True):
    amount: WithdrawalAmount
    idempotency_key: IdempotencyKey


class Withdrawal(msgspec.Struct):
    id: int
    amount: int
    fee: int
    status: WithdrawalStatus
    idempotency_key: str
    created_at: datetime
    completed_at: datetime | None
    reason: str | None = None  # why it failed or was rejected


class WithdrawalPage(msgspec.Struct):
    items: list[Withdrawal]
    next_cursor: str | None


class AdminWithdrawal(msgspec.Struct):
    """A withdrawal as an admin reviews it: whose, to which account, and its payout."""

    id: int
    user_id: int
    phone: str
    amount: int
    fee: int
    status: WithdrawalStatus
    reason: str | None
    bank_account: str | None  # unmasked, admins only
    ifsc: str | None
    provider: str | None
    provider_reference: str | None
    decided_by: int | None
    decided_at: datetime | None
    created_at: datetime
    completed_at: datetime | None


class AdminWithdrawalPage(msgspec.Struct):
    items: list[AdminWithdrawal]
    next_cursor: str | None


class WithdrawalDecision(msgspec.Struct, forbid_unknown_fields=True):
    decision: Literal["APPROVED", "REJECTED"]
    reason: Annotated[StorableText, msgspec.Meta(max_length=500)] | None = None
