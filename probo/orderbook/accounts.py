"""The engine's in-memory accounts: each user's cash and each user's contracts per
market, with what open orders hold of them. Resting orders point at their owner's
account and position, so a fill updates them without a lookup."""

from __future__ import annotations


class Account:
    """A user's cash, and how much of it open buys hold."""

    __slots__ = ("cash", "locked")

    def __init__(self) -> None:
        self.cash = 0
        self.locked = 0


class Position:
    """A user's contracts in one market, how many of them open sells hold, and the
    user's orders resting in that market.

    `orders` is in arrival (= order id) order; an order that left the book (remaining
    0) is dropped lazily (`book.live_orders`), which keeps the hot path to one append.
    """

    __slots__ = ("yes", "no", "yes_locked", "no_locked", "orders")

    def __init__(self) -> None:
        self.yes = 0
        self.no = 0
        self.yes_locked = 0
        self.no_locked = 0
        self.orders: list = []
