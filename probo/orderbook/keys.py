"""The withdrawal keys the engine remembers: the most recent, up to a bound.

The wallet reads a key's first use from Postgres before it asks the engine (withdrawals
are not on the order path), so the engine needs only the keys whose withdrawals may not
have committed yet, and a margin of recent ones for a request that read Postgres just
before its key's first use committed. A key older than that which still reaches the
engine is refused by Postgres's unique index, and the ledger writer answers it as the
repeat it is.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

WITHDRAWAL_KEYS_RECENT_MAX = 10_000

Key = tuple[int, str]  # (user id, idempotency key)
Withdrawal = tuple[int, int]  # (withdrawal id, amount)


class RecentWithdrawals:
    def __init__(
        self,
        oldest_first: Iterable[tuple[Key, Withdrawal]] = (),
        count_max: int = WITHDRAWAL_KEYS_RECENT_MAX,
    ) -> None:
        self.count_max = count_max
        self._withdrawals: OrderedDict[Key, Withdrawal] = OrderedDict(oldest_first)

    def __len__(self) -> int:
        return len(self._withdrawals)

    def get(self, user_id: int, key: str) -> Withdrawal | None:
        return self._withdrawals.get((user_id, key))

    def remember(self, user_id: int, key: str, withdrawal_id: int, amount: int) -> None:
        self._withdrawals[(user_id, key)] = (withdrawal_id, amount)
        if len(self._withdrawals) > self.count_max:
            self._withdrawals.popitem(last=False)
