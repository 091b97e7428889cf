"""`UserFeeds`: the private `user` channel (SPEC §8, §10): `order`, `fill` and
`balance` messages for one user's connections, from committed batches only, in commit
order, each command's messages together.

An `order` message is the order as REST shows it, as of the commit that changed it.
The feeds keep a view of each order of a watched user that may still change: built
from the committed events for an order placed while its owner watches, and read once
from Postgres for an order placed before. Such a read may see a state later than the
commit being sent; the events that follow are then recognised (a fill by its trade id,
a cancel by the status) and not applied twice, so the views stay exact from there on.
Views of orders that are done (filled, canceled) are dropped once sent.

A batch needing no read is sent at once, from the ledger writer's commit callback. One
that does waits, with every batch after it, in a bounded queue that one task drains in
order. A `balance` is the engine's (cash, locked) right after the command, which the
engine records at decision time for watched users (`Entry.balances`).

Sessions end on a live socket too: once a second the feeds drop the user channel of
connections whose token has expired or been revoked, telling them `unauthorized`.

The channel reads orders, trades and cancels; `_CHANGES_NO_ORDER` lists the engine
events it ignores, and any other event is a bug: it raises.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

import asyncpg
import msgspec
from loguru import logger

from probo import trading
from probo.infra import UNAVAILABLE_ERRORS, connection
from probo.orderbook import (
    Engine,
    Entry,
    MarketStatusChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDuplicate,
    OrderRejected,
    PairsChanged,
    Settlement,
    TradeExecuted,
    WithdrawalAccepted,
    WithdrawalDuplicate,
    WithdrawalRejected,
    own_price,
)
from probo.realtime.frames import text_frame
from probo.realtime.subscriber import Subscriber
from probo.realtime.types import (
    BalanceUpdate,
    Error,
    FillUpdate,
    FillView,
    OrderUpdate,
)

USER_BACKLOG_MAX = 10_000  # committed batches waiting behind an order read
USER_RETRY_S = 0.5  # Postgres away: the order read is tried again after this
SESSION_CHECK_INTERVAL_S = 1.0  # how often open user channels are checked for a live session
USER_CHANNEL = "user"

_encode = msgspec.json.Encoder().encode

# The channel follows orders: OrderAccepted, TradeExecuted and OrderCanceled change
# them. These events change no order (a close or a resolution cancels its orders with
# OrderCanceled first); the money they move reaches the channel as the entry's balances.
_CHANGES_NO_ORDER = (
    OrderRejected,
    OrderDuplicate,
    MarketStatusChanged,
    Settlement,
    WithdrawalAccepted,
    WithdrawalRejected,
    WithdrawalDuplicate,
    PairsChanged,
)


def _unknown_event(kind: type) -> AssertionError:
    return AssertionError(f"the user channel does not know {kind.__name__} events")


class _EntryNews:
    """What one committed command changed of watched users' orders."""

    __slots__ = ("changed", "finished", "fills")

    def __init__(self) -> None:
        self.changed: dict[int, trading.OrderView] = {}  # order id -> view to send
        self.finished: set[int] = set()  # orders it fills completely or cancels
        self.fills: list[tuple[int, FillView]] = []  # (user id, fill)


class UserFeeds:
    def __init__(
        self, engine: Engine, pool: asyncpg.Pool, is_revoked: Callable[[str], bool]
    ) -> None:
        self._engine = engine
        self._pool = pool
        self._is_revoked = is_revoked
        self._connections: dict[int, set[Subscriber]] = {}
        self._orders: dict[int, trading.OrderView] = {}  # order id -> view, watched users' only
        self._orders_of: dict[int, set[int]] = {}  # user id -> ids of their views
        self._backlog: deque[Sequence[Entry]] = deque()
        self._wakeup = asyncio.Event()

    # --- joining and leaving -----------------------------------------------------------

    def session_live(self, subscriber: Subscriber) -> bool:
        return (
            subscriber.user_id is not None
            and subscriber.session_expires_at > time.time()
            and not (subscriber.session_id and self._is_revoked(subscriber.session_id))
        )

    def join(self, subscriber: Subscriber) -> None:
        user_id = subscriber.user_id
        assert user_id is not None
        self._connections.setdefault(user_id, set()).add(subscriber)
        # From now on the engine records this user's balance after each command.
        self._engine.watched_users.add(user_id)

    def leave(self, subscriber: Subscriber) -> None:
        user_id = subscriber.user_id
        connections = self._connections.get(user_id) if user_id is not None else None
        if connections is None or subscriber not in connections:
            return
        connections.discard(subscriber)
        if not connections:
            del self._connections[user_id]  # type: ignore[arg-type]
            self._engine.watched_users.discard(user_id)  # type: ignore[arg-type]
            for order_id in self._orders_of.pop(user_id, ()):  # type: ignore[arg-type]
                self._orders.pop(order_id, None)
            if not self._connections:
                # Nobody to send them to; a later subscriber must not get views built
                # from batches before it and missing those skipped meanwhile.
                self._backlog.clear()

    def joined(self, subscriber: Subscriber) -> bool:
        connections = self._connections.get(subscriber.user_id)  # type: ignore[arg-type]
        return connections is not None and subscriber in connections

    # --- from the ledger writer --------------------------------------------------------

    def committed(self, batch: Sequence[Entry]) -> None:
        if not self._connections:
            return
        if self._backlog or self._unknown_orders(batch):
            if len(self._backlog) >= USER_BACKLOG_MAX:
                self._drop_all("the user feed fell behind the ledger")
                return
            self._backlog.append(batch)
            self._wakeup.set()
            return
        try:
            self._send_batch(batch)
        except Exception as exc:  # a bug: lose the user feeds, never the ledger's callback
            logger.opt(exception=exc).error("user feed failed; its feeds close")
            self._drop_all("the user feed failed")

    def _unknown_orders(self, batch: Sequence[Entry]) -> list[int]:
        """Watched users' orders this batch changes that have no view yet and are not
        placed in it: their state before the batch must be read."""
        watched = self._connections
        known = self._orders
        placed: set[int] = set()
        unknown: dict[int, None] = {}
        for entry in batch:
            for event in entry.events:
                kind = type(event)
                if kind is TradeExecuted:
                    t: TradeExecuted = event  # type: ignore[assignment]
                    for user_id, order_id in (
                        (t.taker_user_id, t.taker_order_id),
                        (t.maker_user_id, t.maker_order_id),
                    ):
                        if user_id in watched and order_id not in known and order_id not in placed:
                            unknown[order_id] = None
                elif kind is OrderAccepted:
                    placed.add(event.order_id)  # type: ignore[attr-defined]
                elif kind is OrderCanceled:
                    c: OrderCanceled = event  # type: ignore[assignment]
                    if (
                        c.user_id in watched
                        and c.order_id not in known
                        and c.order_id not in placed
                    ):
                        unknown[c.order_id] = None
                elif kind not in _CHANGES_NO_ORDER:
                    raise _unknown_event(kind)
        return list(unknown)

    async def run(self) -> None:
        """Drain the batches waiting behind an order read, in commit order."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._backlog:
                batch = self._backlog[0]
                try:
                    unknown = self._unknown_orders(batch)
                    if unknown:
                        await self._read_orders(unknown)
                except asyncio.CancelledError:
                    raise
                except UNAVAILABLE_ERRORS as exc:
                    logger.warning("user feed cannot read orders ({!r}); retrying", exc)
                    await asyncio.sleep(USER_RETRY_S)
                    continue
                except Exception as exc:  # a bug: lose the user feeds, not this task
                    logger.opt(exception=exc).error("user feed failed; its feeds close")
                    self._drop_all("the user feed failed")
                    continue
                if self._backlog and self._backlog[0] is batch:
                    self._backlog.popleft()
                    try:
                        self._send_batch(batch)
                    except Exception as exc:  # a bug: lose the user feeds, not this task
                        logger.opt(exception=exc).error("user feed failed; its feeds close")
                        self._drop_all("the user feed failed")

    async def _read_orders(self, order_ids: list[int]) -> None:
        async with (
            connection(self._pool) as conn,
            # The rows and their fills from one snapshot: a commit between the two reads
            # would give a view whose fills disagree with its filled quantity.
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            orders = await trading.orders_of_anyone(conn, order_ids)
        for user_id, order in orders:
            if order.id not in self._orders and user_id in self._connections:
                view = self._add_view(trading.OrderView(user_id, order))
                view.unsent = True

    def _add_view(self, view: trading.OrderView) -> trading.OrderView:
        self._orders[view.id] = view
        self._orders_of.setdefault(view.user_id, set()).add(view.id)
        return view

    def _drop_view(self, view: trading.OrderView) -> None:
        del self._orders[view.id]
        ids = self._orders_of.get(view.user_id)
        if ids is not None:
            ids.discard(view.id)

    def _send_batch(self, batch: Sequence[Entry]) -> None:
        """Each entry's messages for each watched user, in order, one write per connection."""
        out: dict[int, list[bytes]] = {}
        for entry in batch:
            self._entry_messages(entry, out)
        connections = self._connections
        for user_id, payloads in out.items():
            frames = b"".join(text_frame(p) for p in payloads)
            for subscriber in list(connections.get(user_id, ())):
                if not subscriber.offer(frames, payloads):
                    self.leave(subscriber)

    def _entry_messages(self, entry: Entry, out: dict[int, list[bytes]]) -> None:
        """One command's messages, per user: its orders, then its fills, then balances."""
        news = _EntryNews()
        for event in entry.events:
            kind = type(event)
            if kind is TradeExecuted:
                self._traded(event, entry, news)
            elif kind is OrderAccepted:
                self._accepted(event, entry, news)
            elif kind is OrderCanceled:
                self._canceled(event, news)
            elif kind not in _CHANGES_NO_ORDER:
                raise _unknown_event(kind)
        for view in news.changed.values():
            out.setdefault(view.user_id, []).append(_encode(OrderUpdate(view.view())))
        # A view is dropped when the event that ends its order arrives: one read from
        # Postgres may show the end early, and the events up to it must still find it.
        orders = self._orders
        for order_id in news.finished:
            view = orders.get(order_id)
            if view is not None and view.done:
                self._drop_view(view)
        for user_id, fill in news.fills:
            out.setdefault(user_id, []).append(_encode(FillUpdate(fill)))
        if entry.balances:
            connections = self._connections
            for user_id, (cash, locked) in entry.balances.items():
                if user_id in connections:
                    out.setdefault(user_id, []).append(
                        _encode(BalanceUpdate(cash, locked, cash - locked))
                    )

    def _accepted(self, accepted: OrderAccepted, entry: Entry, news: _EntryNews) -> None:
        if accepted.user_id in self._connections and accepted.order_id not in self._orders:
            view = self._add_view(trading.OrderView.accepted(accepted, entry))
            news.changed[accepted.order_id] = view

    def _traded(self, trade: TradeExecuted, entry: Entry, news: _EntryNews) -> None:
        if trade.taker_remaining == 0:
            news.finished.add(trade.taker_order_id)
        if trade.maker_remaining == 0:
            news.finished.add(trade.maker_order_id)
        for user_id, order_id, outcome in (
            (trade.taker_user_id, trade.taker_order_id, trade.taker_outcome),
            (trade.maker_user_id, trade.maker_order_id, trade.maker_outcome),
        ):
            if user_id not in self._connections:
                continue
            price = own_price(outcome, trade.yes_price)
            fill = FillView(order_id, trade.trade_id, price, trade.quantity, trade.kind)
            news.fills.append((user_id, fill))
            view = self._orders.get(order_id)
            if view is not None and (view.fill(trade, entry) or view.unsent):
                view.unsent = False
                news.changed[order_id] = view

    def _canceled(self, canceled: OrderCanceled, news: _EntryNews) -> None:
        news.finished.add(canceled.order_id)
        view = self._orders.get(canceled.order_id)
        if view is not None and (view.cancel(canceled) or view.unsent):
            view.unsent = False
            news.changed[canceled.order_id] = view

    # --- sessions ----------------------------------------------------------------------

    async def check_sessions(self) -> None:
        """Once a second: a user channel whose session ended is closed (not the socket)."""
        ended = _encode(Error("unauthorized", "the session has ended", USER_CHANNEL))
        while True:
            await asyncio.sleep(SESSION_CHECK_INTERVAL_S)
            for connections in list(self._connections.values()):
                for subscriber in list(connections):
                    if not self.session_live(subscriber):
                        self.leave(subscriber)
                        subscriber.offer(text_frame(ended), (ended,))

    def _drop_all(self, reason: str) -> None:
        logger.warning("{}: closing {} user feeds", reason, len(self._connections))
        for connections in list(self._connections.values()):
            for subscriber in list(connections):
                subscriber.kick()
                self.leave(subscriber)
        self._backlog.clear()
