"""The append-only double-entry ledger in Postgres: accounts, transfers, the audit."""

from probo.ledger.audit import Breach, EngineState, audit_url, engine_breaches, ledger_breaches
from probo.ledger.store import (
    open_user_account,
    post_transfers,
    user_account_id,
    user_balance,
    user_transfers,
)
from probo.ledger.types import (
    PAYOUTS_PENDING_ACCOUNT_ID,
    PLATFORM_BANK_ACCOUNT_ID,
    PLATFORM_BONUS_ACCOUNT_ID,
    PLATFORM_FEES_ACCOUNT_ID,
    EntryRefused,
    EntryRepeatsKey,
    EntryUndone,
    InsufficientBalance,
    Transfer,
)
from probo.ledger.writer import EngineControl, LedgerWriter

__all__ = [
    "PAYOUTS_PENDING_ACCOUNT_ID",
    "PLATFORM_BANK_ACCOUNT_ID",
    "PLATFORM_BONUS_ACCOUNT_ID",
    "PLATFORM_FEES_ACCOUNT_ID",
    "Breach",
    "EngineControl",
    "EngineState",
    "EntryRefused",
    "EntryRepeatsKey",
    "EntryUndone",
    "InsufficientBalance",
    "LedgerWriter",
    "Transfer",
    "audit_url",
    "engine_breaches",
    "ledger_breaches",
    "open_user_account",
    "post_transfers",
    "user_account_id",
    "user_balance",
    "user_transfers",
]
