"""Ledger vocabulary: the fixed platform accounts, transfers, the refusal of an overdraft,
and the answers to engine decisions the ledger could not record.

Account and transfer kinds are enumerated by schema.sql CHECK constraints."""

from __future__ import annotations

import msgspec

from probo.web import ApiError

# Fixed ids, inserted by schema.sql.
PLATFORM_BONUS_ACCOUNT_ID = 1
PLATFORM_BANK_ACCOUNT_ID = 2
PLATFORM_FEES_ACCOUNT_ID = 3
# Withdrawals the engine let leave users, until the provider pays them out (SPEC §11).
PAYOUTS_PENDING_ACCOUNT_ID = 4


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


class EntryRefused(ApiError):
    """Postgres refused to record this command's result, on its own: a bug (the edge
    should have refused what Postgres cannot store). Nothing of it happened."""

    def __init__(self) -> None:
        super().__init__(
            500, "internal_error", "this request could not be recorded; nothing was done"
        )


class EntryUndone(ApiError):
    """Decided on engine state that a refused command had changed, so not recorded:
    nothing of it happened, and retrying is safe."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "unavailable",
            "not carried out: the exchange undid a write it could not record; retry",
            headers={"Retry-After": "1"},
        )


# Postgres's unique indexes on keys a client chooses: a repeat the engine no longer
# remembered (probo/orderbook/client_ids.py, keys.py) ends here.
REPEATED_KEY_CONSTRAINTS = frozenset(
    {"orders_client_id_idx", "withdrawals_user_id_idempotency_key_key"}
)


class EntryRepeatsKey(ApiError):
    """Postgres found this command's key (a client order id, a withdrawal's key) used
    before, by a command older than the engine remembers: nothing of this one happened,
    and the original stands (the services answer with it)."""

    def __init__(self) -> None:
        super().__init__(409, "idempotency_conflict", "this key was used before")
