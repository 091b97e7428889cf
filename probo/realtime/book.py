"""`CommittedBook`: one market's aggregated book as of the last committed batch.

The engine's book runs ahead of Postgres (commands decided, not yet committed), so the
feeds keep their own view, built from committed events only: price levels in SPEC §5's
display terms (`yes` = what buyers of YES bid, `no` = what buyers of NO bid) and the
resting orders that make them up. It starts from the engine's book right after
recovery, when the two agree, and then follows each committed entry.

Changes accumulate until `take_changes` (the coalescing window): a level that moved
and came back to where it was is not reported.

Orders, trades and cancels move resting orders; `_MOVES_NO_ORDER` lists the engine
events that do not, and any other event is a bug the book refuses to guess about.
"""

from __future__ import annotations

from collections.abc import Iterable

from probo.orderbook import (
    CONTRACT_PAYOUT,
    Event,
    MarketStatusChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDuplicate,
    OrderRejected,
    PairsChanged,
    RestingOrder,
    Settlement,
    TradeExecuted,
    WithdrawalAccepted,
    WithdrawalDuplicate,
    WithdrawalRejected,
    other_outcome,
    own_price,
)

ASK_KIND_MIN = 2  # RestingOrder kinds: 0 buy YES, 1 sell NO (bids); 2 sell YES, 3 buy NO

Level = tuple[str, int]  # ("yes" | "no", display price)

# Engine events that move no resting order: a close or a resolution cancels the open
# orders first, each with its own OrderCanceled.
_MOVES_NO_ORDER = (
    MarketStatusChanged,
    Settlement,
    WithdrawalAccepted,
    WithdrawalRejected,
    WithdrawalDuplicate,
    OrderRejected,
    OrderDuplicate,
    PairsChanged,
)


def display_level(outcome: str, side: str, price: int) -> Level:
    """Where an order at `price` (its own terms) shows: `buy yes @p` and `sell no
    @(1000-p)` in `yes` at p; `buy no @q` and `sell yes @(1000-q)` in `no` at q."""
    if side == "buy":
        return (outcome, price)
    return (other_outcome(outcome), CONTRACT_PAYOUT - price)


class CommittedBook:
    __slots__ = ("market_id", "levels", "orders", "seq", "_before")

    def __init__(self, market_id: int) -> None:
        self.market_id = market_id
        self.levels: dict[Level, int] = {}  # level -> total resting quantity
        self.orders: dict[int, list] = {}  # order id -> [level, remaining]
        self.seq = 0  # book messages published for this market
        self._before: dict[Level, int] = {}  # levels changed since the last take, as they were

    @classmethod
    def from_engine(cls, market_id: int, resting: Iterable[RestingOrder]) -> CommittedBook:
        book = cls(market_id)
        for order in resting:
            if order.kind < ASK_KIND_MIN:
                level = ("yes", order.price)
            else:
                level = ("no", own_price("no", order.price))
            book.orders[order.order_id] = [level, order.remaining]
            book.levels[level] = book.levels.get(level, 0) + order.remaining
        return book

    def _add(self, level: Level, quantity: int) -> None:
        levels = self.levels
        old = levels.get(level, 0)
        if level not in self._before:
            self._before[level] = old
        new = old + quantity
        if new:
            levels[level] = new
        else:
            del levels[level]

    def apply(self, events: Iterable[Event]) -> None:
        """One committed command's events. A new order rests with what is left of it
        after its trades, unless the same command canceled the rest."""
        incoming: OrderAccepted | None = None
        incoming_left = 0
        for event in events:
            kind = type(event)
            if kind is TradeExecuted:
                trade: TradeExecuted = event  # type: ignore[assignment]
                maker = self.orders.get(trade.maker_order_id)
                if maker is not None:
                    self._add(maker[0], -trade.quantity)
                    maker[1] -= trade.quantity
                    if maker[1] <= 0:
                        del self.orders[trade.maker_order_id]
                if incoming is not None and trade.taker_order_id == incoming.order_id:
                    incoming_left = trade.taker_remaining
            elif kind is OrderAccepted:
                incoming = event  # type: ignore[assignment]
                incoming_left = incoming.quantity  # type: ignore[union-attr]
            elif kind is OrderCanceled:
                canceled: OrderCanceled = event  # type: ignore[assignment]
                if incoming is not None and canceled.order_id == incoming.order_id:
                    incoming_left = 0  # ioc / fok / market remainder: never rested
                    continue
                resting = self.orders.pop(canceled.order_id, None)
                if resting is not None:
                    self._add(resting[0], -resting[1])
            elif kind not in _MOVES_NO_ORDER:
                raise AssertionError(f"the committed book does not know {kind.__name__} events")
        if incoming is not None and incoming_left > 0:
            level = display_level(incoming.outcome, incoming.side, incoming.price)
            self.orders[incoming.order_id] = [level, incoming_left]
            self._add(level, incoming_left)

    def take_changes(self) -> list[tuple[str, int, int]]:
        """(outcome, price, new total) of every level that differs from the last take."""
        changes = [
            (level[0], level[1], self.levels.get(level, 0))
            for level, before in self._before.items()
            if self.levels.get(level, 0) != before
        ]
        self._before.clear()
        return changes

    @property
    def pending(self) -> bool:
        return bool(self._before)

    def depth(self, count: int | None = None) -> dict[str, list[tuple[int, int]]]:
        """Levels best first: the highest bid of each list first."""
        yes = sorted(((p, q) for (o, p), q in self.levels.items() if o == "yes"), reverse=True)
        no = sorted(((p, q) for (o, p), q in self.levels.items() if o == "no"), reverse=True)
        if count is not None:
            yes, no = yes[:count], no[:count]
        return {"yes": yes, "no": no}
