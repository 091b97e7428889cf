"""Ledger vocabulary: account kinds, the fixed platform accounts, transfer kinds."""

from __future__ import annotations

import msgspec

# Fixed ids, inserted by schema.sql.
PLATFORM_BONUS_ACCOUNT_ID = 1
PLATFORM_BANK_ACCOUNT_ID = 2
PLATFORM_FEES_ACCOUNT_ID = 3

ACCOUNT_KINDS = ("user_cash", "market_escrow", "platform_bonus", "platform_bank", "platform_fees")
TRANSFER_KINDS = ("signup_bonus", "referral_bonus", "deposit", "withdrawal", "trade", "payout", "fee")
# Accounts whose balance may never go below zero (SPEC §3 invariant 3).
NON_NEGATIVE_KINDS = ("user_cash", "market_escrow")


class Transfer(msgspec.Struct, frozen=True):
    """`amount` paise move from `debit_account_id` to `credit_account_id`."""

    debit_account_id: int
    credit_account_id: int
    amount: int
    kind: str
    ref_type: str
    ref_id: int


class InsufficientBalance(Exception):
    """Posting would take a user's cash or a market's escrow below zero."""
