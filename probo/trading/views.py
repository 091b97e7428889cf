"""The order view built from engine events: the answer to a new order (HTTP 201) and
the user channel's `order` messages (probo/realtime) come from this one builder."""

from __future__ import annotations

from probo.orderbook import Entry, OrderAccepted, OrderCanceled, TradeExecuted, own_price
from probo.trading.types import Fill, Order, average


class OrderView:
    """One order as its events have built it so far (on the user channel: as committed)."""

    __slots__ = (
        "id", "user_id", "client_order_id", "market_id", "outcome", "side", "type",
        "time_in_force", "price", "quantity", "status", "filled", "cost", "fills",
        "trade_ids", "created_at", "cancel_reason", "unsent",
    )  # fmt: skip

    def __init__(self, user_id: int, order: Order) -> None:
        self.id = order.id
        self.user_id = user_id
        self.client_order_id = order.client_order_id
        self.market_id = order.market_id
        self.outcome = order.outcome
        self.side = order.side
        self.type = order.type
        self.time_in_force = order.time_in_force
        self.price = order.price
        self.quantity = order.quantity
        self.status = order.status
        self.filled = order.filled_quantity
        self.cost = sum(f.price * f.quantity for f in order.fills)
        self.fills = list(order.fills)
        self.trade_ids = {f.trade_id for f in order.fills}
        self.created_at = order.created_at
        self.cancel_reason = order.cancel_reason
        self.unsent = False  # read from Postgres for a change not yet sent

    @classmethod
    def accepted(cls, event: OrderAccepted, entry: Entry) -> OrderView:
        return cls(
            event.user_id,
            Order(
                id=event.order_id,
                client_order_id=event.client_order_id,
                market_id=event.market_id,
                outcome=event.outcome,
                side=event.side,
                type=event.type,
                time_in_force=event.time_in_force,
                price=event.price if event.type == "limit" else None,
                quantity=event.quantity,
                status="open",
                filled_quantity=0,
                remaining_quantity=event.quantity,
                average_price=None,
                fills=[],
                created_at=entry.at,
            ),
        )

    def fill(self, trade: TradeExecuted, entry: Entry) -> bool:
        """Apply one trade of this order; False when the view already has it."""
        if trade.trade_id in self.trade_ids:
            return False
        price = own_price(self.outcome, trade.yes_price)
        self.trade_ids.add(trade.trade_id)
        self.fills.append(Fill(trade.trade_id, price, trade.quantity, trade.kind, entry.at))
        self.filled += trade.quantity
        self.cost += price * trade.quantity
        if self.filled >= self.quantity:
            self.status = "filled"
        return True

    def cancel(self, event: OrderCanceled) -> bool:
        if self.status != "open":
            return False
        self.status = "canceled"
        self.cancel_reason = event.reason
        return True

    @property
    def done(self) -> bool:
        return self.status != "open"

    def view(self) -> Order:
        return Order(
            id=self.id,
            client_order_id=self.client_order_id,
            market_id=self.market_id,
            outcome=self.outcome,
            side=self.side,
            type=self.type,
            time_in_force=self.time_in_force,
            price=self.price,
            quantity=self.quantity,
            status=self.status,  # type: ignore[arg-type]
            filled_quantity=self.filled,
            remaining_quantity=self.quantity - self.filled if self.status == "open" else 0,
            average_price=average(self.cost, self.filled),
            fills=list(self.fills),
            created_at=self.created_at,
            cancel_reason=self.cancel_reason,
        )


def order_from_events(entry: Entry) -> Order:
    """The answer to a new order, from the events its command produced."""
    accepted: OrderAccepted = entry.events[0]  # type: ignore[assignment]
    view = OrderView.accepted(accepted, entry)
    for event in entry.events:
        kind = type(event)
        if kind is TradeExecuted and event.taker_order_id == view.id:  # type: ignore[union-attr]
            view.fill(event, entry)  # type: ignore[arg-type]
        elif kind is OrderCanceled and event.order_id == view.id:  # type: ignore[union-attr]
            view.cancel(event)  # type: ignore[arg-type]
    return view.view()
