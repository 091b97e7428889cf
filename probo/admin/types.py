"""Wire types of the back office."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from probo.trading import Order, PortfolioPosition
from probo.wallet import WalletTransaction

TransferKind = Literal[
    "signup_bonus",
    "referral_bonus",
    "deposit",
    "withdrawal",
    "withdrawal_reversal",
    "trade",
    "payout",
    "fee",
    "split",
    "merge",
]


class AdminUser(msgspec.Struct):
    id: int
    phone: str
    display_name: str | None
    role: Literal["user", "admin"]
    kyc_status: Literal["NONE", "PENDING", "VERIFIED", "REJECTED"]
    balance: int  # the ledger's, as committed
    locked: int  # what open buy orders hold
    suspended: bool
    created_at: datetime
    suspended_at: datetime | None = None


class AdminUserPage(msgspec.Struct):
    items: list[AdminUser]
    next_cursor: str | None


class AdminUserDetail(msgspec.Struct):
    id: int
    phone: str
    display_name: str | None
    role: Literal["user", "admin"]
    kyc_status: Literal["NONE", "PENDING", "VERIFIED", "REJECTED"]
    balance: int
    locked: int
    suspended: bool
    created_at: datetime
    suspended_at: datetime | None
    positions: list[PortfolioPosition]
    open_orders: list[Order]  # newest first, at most OPEN_ORDERS_SHOWN_MAX
    recent_transactions: list[WalletTransaction]  # the last 20, newest first


class AccountOwner(msgspec.Struct):
    """Whose account: a user's cash, a market's escrow, or a platform account."""

    kind: str
    user_id: int | None
    market_id: int | None


class AdminTransfer(msgspec.Struct):
    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    kind: str
    ref: str  # "<type>:<id>", as the wallet shows it
    created_at: datetime
    debit_account: AccountOwner
    credit_account: AccountOwner


class AdminTransferPage(msgspec.Struct):
    items: list[AdminTransfer]
    next_cursor: str | None


class Stats(msgspec.Struct):
    users: int
    users_24h: int  # signed up in the last 24 hours
    deposits_24h: int  # paise of deposits completed in the last 24 hours
    withdrawals_24h: int  # paise of withdrawals asked for in the last 24 hours
    volume_24h: int  # contracts traded in the last 24 hours
    fees_total: int  # the platform_fees account's balance
    open_interest: int  # YES contracts outstanding in unresolved markets
    open_markets: int
    pending_kyc: int
    pending_withdrawals: int
