"""Ledger vocabulary: the fixed platform accounts, transfers, and the refusal of an overdraft.

Account and transfer kinds are enumerated by schema.sql CHECK constraints."""

from __future__ import annotations

import msgspec

# Fixed ids, inserted by schema.sql.
PLATFORM_BONUS_ACCOUNT_ID = 1
PLATFORM_BANK_ACCOUNT_ID = 2
PLATFORM_FEES_ACCOUNT_ID = 3


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
