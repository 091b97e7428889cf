"""The client order ids the engine remembers: every open order's, and the most recent
others up to a bound, so memory follows open state and recent traffic, not history.

A repeat of an id remembered here is answered at once with its original order. An
older one is Postgres's to remember: its unique index refuses the repeat when the
ledger writer commits it, and the writer answers that with the original (the engine,
which had taken the repeat for a new order, is rebuilt; see probo/ledger/writer.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final

CLIENT_ORDER_IDS_RECENT_MAX: Final = 100_000  # ids of closed orders kept, newest first
EVICTIONS_PER_ORDER_MAX: Final = 2  # oldest ids looked at each time one is added


class ClientOrderIds:
    def __init__(self, recent_max: int = CLIENT_ORDER_IDS_RECENT_MAX) -> None:
        self.recent_max = recent_max
        # (user id, client order id) -> (order id, market id)
        self._orders: dict[tuple[int, str], tuple[int, int]] = {}
        self._oldest_first: deque[tuple[int, str]] = deque()

    def __len__(self) -> int:
        return len(self._orders)

    def order_id(self, user_id: int, client_order_id: str) -> int | None:
        found = self._orders.get((user_id, client_order_id))
        return None if found is None else found[0]

    def restore(self, user_id: int, client_order_id: str, order_id: int, market_id: int) -> None:
        """Recovery, oldest first: remembered as loaded, nothing forgotten."""
        key = (user_id, client_order_id)
        self._orders[key] = (order_id, market_id)
        self._oldest_first.append(key)

    def remember(
        self,
        user_id: int,
        client_order_id: str,
        order_id: int,
        market_id: int,
        is_resting: Callable[[int, int], bool],
    ) -> None:
        """A new order's id; then, over the bound, the oldest ones are forgotten unless
        `is_resting(market id, order id)`: an open order's id moves to the back."""
        self.restore(user_id, client_order_id, order_id, market_id)
        oldest_first = self._oldest_first
        for _ in range(EVICTIONS_PER_ORDER_MAX):
            if len(oldest_first) <= self.recent_max:
                return
            oldest = oldest_first.popleft()
            held_order_id, held_market_id = self._orders[oldest]
            if is_resting(held_market_id, held_order_id):
                oldest_first.append(oldest)
            else:
                del self._orders[oldest]
