"""One market's order book in YES terms: price levels, FIFO queues, best prices.

The book knows orders, never balances (risk lives in `risk.py`). Bids are buy YES
and sell NO; asks are sell YES and buy NO, each at its YES price. A level is an
intrusive doubly linked list of `RestingOrder`s in arrival order, so adding, filling at
the head and canceling from the middle are all O(1). A bit mask per side records the
non-empty levels: the best bid is its highest set bit and the best ask its lowest,
found in O(1) whatever the tick.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from probo.orderbook.accounts import Account, Position
from probo.orderbook.types import CONTRACT_PAYOUT, Outcome, Side

# Order kinds. Bids are the kinds below ASK_KIND_MIN.
BUY_YES: Final = 0
SELL_NO: Final = 1
SELL_YES: Final = 2
BUY_NO: Final = 3
ASK_KIND_MIN: Final = 2
USER_LIST_COMPACT_MIN: Final = 16

# Module constants are Final so the compiled core reads them as C statics, not dict lookups.
PAYOUT: Final = CONTRACT_PAYOUT


# What an order kind is, as functions rather than tables indexed by kind: the compiled
# core would build a fresh tuple out of a Final tuple on every such lookup.


def kind_is_buy(kind: int) -> bool:
    return kind == BUY_YES or kind == BUY_NO


def kind_in_yes_terms(kind: int) -> bool:
    """Whether the order's own price is its YES price (a YES order's)."""
    return kind == BUY_YES or kind == SELL_YES


def kind_outcome(kind: int) -> Outcome:
    return "yes" if kind == BUY_YES or kind == SELL_YES else "no"


def kind_side(kind: int) -> Side:
    return "buy" if kind == BUY_YES or kind == BUY_NO else "sell"


def yes_price_of(kind: int, own_price: int) -> int:
    """The book price of an order priced `own_price` in its own outcome's terms."""
    return own_price if kind == BUY_YES or kind == SELL_YES else CONTRACT_PAYOUT - own_price


class RestingOrder:
    """An order on the book. `price` is its YES price; `remaining` what is left to fill.

    `account` and `position` are the owner's (set by the exchange): a fill updates them
    without looking the owner up, which is most of a trade's cost.
    """

    __slots__ = (
        "order_id",
        "user_id",
        "kind",
        "price",
        "remaining",
        "prev",
        "next",
        "account",
        "position",
    )

    def __init__(
        self,
        order_id: int,
        user_id: int,
        kind: int,
        price: int,
        remaining: int,
        account: Account,
        position: Position,
    ) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.kind = kind
        self.price = price
        self.remaining = remaining
        self.prev: RestingOrder | None = None
        self.next: RestingOrder | None = None
        self.account = account
        self.position = position

    @property
    def own_price(self) -> int:
        return yes_price_of(self.kind, self.price)  # the mapping is its own inverse

    def __repr__(self) -> str:
        return (
            f"RestingOrder(id={self.order_id}, user={self.user_id}, {kind_side(self.kind)} "
            f"{kind_outcome(self.kind)} @{self.own_price}, remaining={self.remaining})"
        )


def live_orders(position: Position) -> list[RestingOrder]:
    """The user's open orders in the position's market, by order id (compacting the list)."""
    live = [order for order in position.orders if order.remaining]
    if len(live) != len(position.orders):
        position.orders = live
    return live


class Book:
    """Levels are indexed by `price // tick`, from 1 to `1000 // tick - 1`."""

    __slots__ = (
        "tick",
        "level_count",
        "bid_head",
        "bid_tail",
        "bid_quantity",
        "bid_mask",
        "ask_head",
        "ask_tail",
        "ask_quantity",
        "ask_mask",
        "orders",
    )

    def __init__(self, tick: int) -> None:
        assert CONTRACT_PAYOUT % tick == 0, tick
        self.tick = tick
        self.level_count = CONTRACT_PAYOUT // tick
        size = self.level_count
        self.bid_head: list[RestingOrder | None] = [None] * size
        self.bid_tail: list[RestingOrder | None] = [None] * size
        self.bid_quantity = [0] * size
        self.bid_mask = 0
        self.ask_head: list[RestingOrder | None] = [None] * size
        self.ask_tail: list[RestingOrder | None] = [None] * size
        self.ask_quantity = [0] * size
        self.ask_mask = 0
        self.orders: dict[int, RestingOrder] = {}

    # --- best prices -------------------------------------------------------------

    def best_bid_level(self) -> int:
        """Index of the best bid level, or 0 when there are no bids."""
        return self.bid_mask.bit_length() - 1 if self.bid_mask else 0

    def best_ask_level(self) -> int:
        """Index of the best ask level, or 0 when there are no asks."""
        mask = self.ask_mask
        return (mask & -mask).bit_length() - 1 if mask else 0

    def first_within(self, asks: bool, yes_limit: int) -> RestingOrder | None:
        """The order that an incoming order limited at `yes_limit` meets first on one
        side: the head of the best ask at or below the limit, or of the best bid at or
        above it; None when that side has nothing within the limit."""
        if asks:
            mask = self.ask_mask
            if not mask:
                return None
            level = (mask & -mask).bit_length() - 1
            if level * self.tick > yes_limit:
                return None
            return self.ask_head[level]
        mask = self.bid_mask
        if not mask:
            return None
        level = mask.bit_length() - 1
        if level * self.tick < yes_limit:
            return None
        return self.bid_head[level]

    # --- changes -----------------------------------------------------------------

    def add(self, order: RestingOrder) -> None:
        """Append `order` at the back of its level's queue."""
        level = order.price // self.tick
        self.orders[order.order_id] = order
        user_orders = order.position.orders
        user_orders.append(order)
        size = len(user_orders)
        # Drop entries of gone orders whenever the list reaches a power of two: O(1)
        # amortised, and dead entries never outnumber the live ones by much.
        if size >= USER_LIST_COMPACT_MIN and size & (size - 1) == 0:
            live_orders(order.position)
        if order.kind < ASK_KIND_MIN:
            tail = self.bid_tail[level]
            if tail is None:
                self.bid_head[level] = order
                self.bid_mask |= 1 << level
            else:
                tail.next = order
                order.prev = tail
            self.bid_tail[level] = order
            self.bid_quantity[level] += order.remaining
        else:
            tail = self.ask_tail[level]
            if tail is None:
                self.ask_head[level] = order
                self.ask_mask |= 1 << level
            else:
                tail.next = order
                order.prev = tail
            self.ask_tail[level] = order
            self.ask_quantity[level] += order.remaining

    def remove(self, order: RestingOrder) -> None:
        """Take `order` off the book wherever it is in its queue."""
        level = order.price // self.tick
        del self.orders[order.order_id]
        previous, following = order.prev, order.next
        if order.kind < ASK_KIND_MIN:
            if previous is None:
                self.bid_head[level] = following
            else:
                previous.next = following
            if following is None:
                self.bid_tail[level] = previous
            else:
                following.prev = previous
            self.bid_quantity[level] -= order.remaining
            if self.bid_head[level] is None:
                self.bid_mask &= ~(1 << level)
        else:
            if previous is None:
                self.ask_head[level] = following
            else:
                previous.next = following
            if following is None:
                self.ask_tail[level] = previous
            else:
                following.prev = previous
            self.ask_quantity[level] -= order.remaining
            if self.ask_head[level] is None:
                self.ask_mask &= ~(1 << level)
        order.prev = order.next = None
        order.remaining = 0  # off the book: the per-user list drops it lazily

    def reduce(self, order: RestingOrder, quantity: int) -> None:
        """`order` filled `quantity` and stays (partly) on the book."""
        order.remaining -= quantity
        level = order.price // self.tick
        if order.kind < ASK_KIND_MIN:
            self.bid_quantity[level] -= quantity
        else:
            self.ask_quantity[level] -= quantity

    # --- reads -----------------------------------------------------------------

    def bids(self) -> Iterator[RestingOrder]:
        """Every bid in priority order: best price first, then arrival."""
        mask = self.bid_mask
        while mask:
            level = mask.bit_length() - 1
            order = self.bid_head[level]
            while order is not None:
                yield order
                order = order.next
            mask &= ~(1 << level)

    def asks(self) -> Iterator[RestingOrder]:
        mask = self.ask_mask
        while mask:
            level = (mask & -mask).bit_length() - 1
            order = self.ask_head[level]
            while order is not None:
                yield order
                order = order.next
            mask &= mask - 1

    def levels(self, asks: bool) -> list[tuple[int, int]]:
        """One side's (YES price, resting quantity) per level, best first."""
        levels: list[tuple[int, int]] = []
        tick = self.tick
        if asks:
            mask = self.ask_mask
            while mask:
                level = (mask & -mask).bit_length() - 1
                levels.append((level * tick, self.ask_quantity[level]))
                mask &= mask - 1
        else:
            mask = self.bid_mask
            while mask:
                level = mask.bit_length() - 1
                levels.append((level * tick, self.bid_quantity[level]))
                mask &= ~(1 << level)
        return levels

    def quantity_within(self, asks: bool, yes_limit: int, quantity_max: int) -> int:
        """The resting quantity on one side that an incoming order limited at `yes_limit`
        would meet, counted level by level, best first, until it reaches `quantity_max`."""
        total = 0
        limit_level = yes_limit // self.tick
        if asks:
            mask = self.ask_mask
            while mask and total < quantity_max:
                level = (mask & -mask).bit_length() - 1
                if level > limit_level:
                    break
                total += self.ask_quantity[level]
                mask &= mask - 1
        else:
            mask = self.bid_mask
            while mask and total < quantity_max:
                level = mask.bit_length() - 1
                if level < limit_level:
                    break
                total += self.bid_quantity[level]
                mask &= ~(1 << level)
        return total

    def depth(self, levels: int | None = None) -> dict[str, list[tuple[int, int]]]:
        """SPEC §5: `yes` = YES bids at their price; `no` = asks shown as NO bids at
        `1000 - price`; best first."""
        yes: list[tuple[int, int]] = []
        mask = self.bid_mask
        while mask and (levels is None or len(yes) < levels):
            level = mask.bit_length() - 1
            yes.append((level * self.tick, self.bid_quantity[level]))
            mask &= ~(1 << level)
        no: list[tuple[int, int]] = []
        mask = self.ask_mask
        while mask and (levels is None or len(no) < levels):
            level = (mask & -mask).bit_length() - 1
            no.append((CONTRACT_PAYOUT - level * self.tick, self.ask_quantity[level]))
            mask &= mask - 1
        return {"yes": yes, "no": no}

    def validate(self) -> None:
        """Check the book's own invariants; AssertionError names the first breach."""
        seen: set[int] = set()
        for side, heads, tails, quantities, mask in (
            ("bid", self.bid_head, self.bid_tail, self.bid_quantity, self.bid_mask),
            ("ask", self.ask_head, self.ask_tail, self.ask_quantity, self.ask_mask),
        ):
            for level in range(self.level_count):
                head = heads[level]
                assert (head is not None) == bool(mask >> level & 1), (
                    f"{side} mask wrong at level {level}"
                )
                total, previous, order, last_id = 0, None, head, 0
                while order is not None:
                    assert order.prev is previous, (
                        f"{side} level {level}: broken back link at {order}"
                    )
                    assert order.price == level * self.tick, f"{order} queued at level {level}"
                    assert (order.kind >= ASK_KIND_MIN) == (side == "ask"), (
                        f"{order} on the {side} side"
                    )
                    assert order.remaining > 0, f"{order} rests with nothing left"
                    assert order.order_id > last_id, (
                        f"{side} level {level} out of arrival order at {order}"
                    )
                    assert self.orders.get(order.order_id) is order, (
                        f"{order} missing from the index"
                    )
                    assert order.order_id not in seen, f"{order} queued twice"
                    seen.add(order.order_id)
                    total += order.remaining
                    last_id, previous, order = order.order_id, order, order.next
                assert tails[level] is previous, f"{side} level {level}: tail is not the last order"
                assert quantities[level] == total, (
                    f"{side} level {level}: total {quantities[level]} != {total}"
                )
            assert mask >> self.level_count == 0 and not mask & 1, (
                f"{side} mask has bits off the grid"
            )
        assert seen == set(self.orders), "the order index holds orders that are not queued"
        best_bid, best_ask = self.best_bid_level(), self.best_ask_level()
        assert not (best_bid and best_ask and best_bid >= best_ask), (
            f"crossed book at rest: {best_bid} >= {best_ask}"
        )
