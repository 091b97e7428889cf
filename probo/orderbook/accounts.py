"""In-memory user cash held by the engine: the fast copy of the ledger's user accounts.

Locks for open orders arrive with the matching core; today the engine holds cash and
applies outside credits exactly once each.
"""

from __future__ import annotations


class Accounts:
    __slots__ = ("cash_by_user", "locked_by_user")

    def __init__(self) -> None:
        self.cash_by_user: dict[int, int] = {}
        self.locked_by_user: dict[int, int] = {}

    def create_user(self, user_id: int) -> None:
        self.cash_by_user.setdefault(user_id, 0)

    def credit(self, user_id: int, amount: int) -> None:
        assert amount > 0, amount
        self.cash_by_user[user_id] = self.cash_by_user.get(user_id, 0) + amount

    def cash(self, user_id: int) -> int:
        return self.cash_by_user.get(user_id, 0)

    def locked(self, user_id: int) -> int:
        return self.locked_by_user.get(user_id, 0)

    def available(self, user_id: int) -> int:
        return self.cash(user_id) - self.locked(user_id)
