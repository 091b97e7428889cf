"""`Hub`: the live feeds, published from committed ledger batches only, in commit order.

The ledger writer calls `committed(batch)` right after each commit. For markets the
hub applies the events to each market's `CommittedBook` at once and gathers trades and
status changes; within `COALESCE_S` it flushes every market that changed: one `book`
delta (the next `seq`, only levels whose total changed), one `trade` message with the
window's trades, then `market` messages. Each message is encoded once for its whole
room and offered to every subscriber's bounded queue.

REST `/orderbook` and a new subscriber's snapshot first flush their market, so the
book they see is exactly the one after the last `book` message of that `seq`.

The user channel needs orders as REST shows them, which only Postgres has in full:
batches touching a watched user go, in commit order, through a bounded queue to one
task that reads those orders (committed, so never ahead of the ledger) and sends
`order`, `fill` and `balance` messages to that user's connections.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

import asyncpg
import msgspec
from loguru import logger

from probo import trading
from probo.db import UNAVAILABLE_ERRORS, connection
from probo.orderbook import (
    Engine,
    Entry,
    MarketStatusChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDuplicate,
    OrderRejected,
    Settlement,
    TradeExecuted,
)
from probo.realtime.book import PAYOUT, CommittedBook
from probo.realtime.subscriber import Subscriber
from probo.realtime.types import (
    BalanceUpdate,
    BookDelta,
    FillUpdate,
    FillView,
    Level,
    LevelChange,
    MarketChanged,
    OrderBook,
    OrderUpdate,
    Snapshot,
    Trades,
    TradeView,
)

COALESCE_S = 0.025  # book changes, trades and status changes wait at most this long
USER_BACKLOG_MAX = 10_000  # committed batches waiting for the user channel's reader
USER_RETRY_S = 0.5  # Postgres away: the user channel's reader tries again after this

_encode = msgspec.json.Encoder().encode


def market_channel(market_id: int) -> str:
    return f"market:{market_id}"


class _UserWork:
    """What one committed batch means for watched users, in commit order."""

    __slots__ = ("order_ids", "fills", "balances")

    def __init__(self) -> None:
        self.order_ids: dict[int, None] = {}  # orders of watched users that changed
        self.fills: list[tuple[int, FillView]] = []  # (user, fill)
        self.balances: dict[int, tuple[int, int]] = {}  # user -> last (cash, locked)


class Hub:
    def __init__(self, engine: Engine, pool: asyncpg.Pool, coalesce_s: float = COALESCE_S) -> None:
        self._engine = engine
        self._pool = pool
        self._coalesce_s = coalesce_s
        self._books: dict[int, CommittedBook] = {}
        self._rooms: dict[int, set[Subscriber]] = {}
        self._users: dict[int, set[Subscriber]] = {}
        self._trades: dict[int, list[TradeView]] = {}  # market -> trades not yet sent
        self._statuses: dict[int, list[MarketChanged]] = {}  # market -> not yet sent
        self._changed: set[int] = set()  # markets with something to flush
        self._flush: asyncio.TimerHandle | None = None
        self._user_work: deque[_UserWork] = deque()
        self._user_wakeup = asyncio.Event()

    def load(self) -> None:
        """Start from the engine's books: right after recovery they are the committed ones."""
        exchange = self._engine.exchange
        self._books = {
            market_id: CommittedBook.from_engine(market_id, exchange.open_orders(market_id))
            for market_id in exchange.markets
        }

    def _book(self, market_id: int) -> CommittedBook:
        book = self._books.get(market_id)
        if book is None:
            book = self._books[market_id] = CommittedBook(market_id)
        return book

    # --- from the ledger writer -----------------------------------------------------

    def committed(self, batch: Sequence[Entry]) -> None:
        watched = self._engine.watched_users
        work = _UserWork() if watched else None
        for entry in batch:
            events = entry.events
            if events:
                first = type(events[0])
                if first is not OrderRejected and first is not OrderDuplicate:
                    self._apply(events, entry)
                if work is not None:
                    _gather_user_work(work, events, watched)
            if work is not None and entry.balances:
                work.balances.update(entry.balances)
        if self._changed and self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self._coalesce_s, self.flush)
        if work is not None and (work.order_ids or work.fills or work.balances):
            if len(self._user_work) >= USER_BACKLOG_MAX:
                self._drop_user_feeds("the user feed fell behind the ledger")
            else:
                self._user_work.append(work)
                self._user_wakeup.set()

    def _apply(self, events: Sequence[object], entry: Entry) -> None:
        market_id: int | None = getattr(events[0], "market_id", None)
        if market_id is None:  # a withdrawal
            return
        book = self._book(market_id)
        book.apply(events)  # type: ignore[arg-type]
        if book.pending:
            self._changed.add(market_id)
        if market_id not in self._rooms:
            return
        for event in events:
            kind = type(event)
            if kind is TradeExecuted:
                t: TradeExecuted = event  # type: ignore[assignment]
                trade = TradeView(
                    t.trade_id, t.yes_price, t.quantity, t.kind, t.taker_outcome, t.taker_side, entry.at
                )  # fmt: skip
                self._trades.setdefault(market_id, []).append(trade)
                self._changed.add(market_id)
            elif kind is MarketStatusChanged:
                status = MarketChanged(market_channel(market_id), market_id, event.status)  # type: ignore[attr-defined]
                self._statuses.setdefault(market_id, []).append(status)
                self._changed.add(market_id)
            elif kind is Settlement:
                resolved = MarketChanged(
                    market_channel(market_id),
                    market_id,
                    "resolved",
                    event.outcome,  # type: ignore[attr-defined]
                )
                self._statuses.setdefault(market_id, []).append(resolved)
                self._changed.add(market_id)

    # --- market rooms ----------------------------------------------------------------

    def flush(self) -> None:
        """Send what every changed market gathered (the coalescing window ends)."""
        self._flush = None
        changed, self._changed = self._changed, set()
        for market_id in changed:
            self._flush_market(market_id)

    def _flush_market(self, market_id: int) -> None:
        book = self._books.get(market_id)
        if book is None:
            return
        room = self._rooms.get(market_id)
        channel = market_channel(market_id)
        changes = book.take_changes()
        if changes:
            book.seq += 1  # counted with or without subscribers: REST shows it too
            if room:
                delta = BookDelta(channel, book.seq, [LevelChange(*c) for c in changes])  # type: ignore[arg-type]
                self._broadcast(room, _encode(delta).decode())
        trades = self._trades.pop(market_id, None)
        if trades and room:
            self._broadcast(room, _encode(Trades(channel, trades)).decode())
        for status in self._statuses.pop(market_id, ()):
            if room:
                self._broadcast(room, _encode(status).decode())

    def _flush_now(self, market_id: int) -> None:
        if market_id in self._changed:
            self._changed.discard(market_id)
            self._flush_market(market_id)

    def _broadcast(self, room: set[Subscriber], text: str) -> None:
        behind = [subscriber for subscriber in room if not subscriber.offer(text)]
        for subscriber in behind:
            self.leave(subscriber)

    def order_book(self, market_id: int, depth: int | None = None) -> OrderBook | None:
        """The committed book and its `seq` (None for a market the hub never saw)."""
        if market_id not in self._books:
            return None
        self._flush_now(market_id)
        book = self._books[market_id]
        levels = book.depth(depth)
        return OrderBook(
            market_id=market_id,
            seq=book.seq,
            yes=[Level(p, q) for p, q in levels["yes"]],
            no=[Level(p, q) for p, q in levels["no"]],
        )

    def join_market(self, subscriber: Subscriber, market_id: int) -> bool:
        """Snapshot then deltas; False for an unknown market. Joining again re-snapshots."""
        if market_id not in self._engine.exchange.markets:
            return False
        self._book(market_id)
        book = self.order_book(market_id)
        assert book is not None
        channel = market_channel(market_id)
        if subscriber.offer(_encode(Snapshot(channel, book.seq, book)).decode()):
            self._rooms.setdefault(market_id, set()).add(subscriber)
            subscriber.markets.add(market_id)
        return True

    def leave_market(self, subscriber: Subscriber, market_id: int) -> None:
        room = self._rooms.get(market_id)
        if room is not None:
            room.discard(subscriber)
            if not room:
                del self._rooms[market_id]
                self._trades.pop(market_id, None)
                self._statuses.pop(market_id, None)
        subscriber.markets.discard(market_id)

    # --- the user channel ------------------------------------------------------------

    def join_user(self, subscriber: Subscriber) -> None:
        assert subscriber.user_id is not None
        self._users.setdefault(subscriber.user_id, set()).add(subscriber)
        self._engine.watched_users.add(subscriber.user_id)

    def leave_user(self, subscriber: Subscriber) -> None:
        user_id = subscriber.user_id
        connections = self._users.get(user_id) if user_id is not None else None
        if connections is None or subscriber not in connections:
            return
        connections.discard(subscriber)
        if not connections:
            del self._users[user_id]  # type: ignore[arg-type]
            self._engine.watched_users.discard(user_id)  # type: ignore[arg-type]

    def leave(self, subscriber: Subscriber) -> None:
        """Out of every room (a closed or kicked connection)."""
        for market_id in list(subscriber.markets):
            self.leave_market(subscriber, market_id)
        self.leave_user(subscriber)

    def _drop_user_feeds(self, reason: str) -> None:
        logger.warning("{}: closing {} user feeds", reason, len(self._users))
        for connections in list(self._users.values()):
            for subscriber in list(connections):
                subscriber.kick()
                self.leave(subscriber)
        self._user_work.clear()

    async def run_user_feed(self) -> None:
        """One reader, in commit order: orders from Postgres, then the messages."""
        while True:
            await self._user_wakeup.wait()
            self._user_wakeup.clear()
            while self._user_work:
                work = self._user_work[0]
                try:
                    orders = await self._read_orders(list(work.order_ids))
                except asyncio.CancelledError:
                    raise
                except UNAVAILABLE_ERRORS as exc:
                    logger.warning("user feed cannot read orders ({!r}); retrying", exc)
                    await asyncio.sleep(USER_RETRY_S)
                    continue
                except Exception as exc:  # a bug: lose this batch's user messages, not the feed
                    logger.opt(exception=exc).error("user feed failed on a batch; its feeds close")
                    self._drop_user_feeds("the user feed failed")
                    continue
                if self._user_work and self._user_work[0] is work:
                    self._user_work.popleft()
                    self._send_user_work(work, orders)

    async def _read_orders(self, order_ids: list[int]) -> list[tuple[int, trading.Order]]:
        if not order_ids:
            return []
        async with connection(self._pool) as conn:
            return await trading.orders_of_anyone(conn, order_ids)

    def _send_user_work(self, work: _UserWork, orders: list[tuple[int, trading.Order]]) -> None:
        users = self._users
        for user_id, order in orders:
            self._to_user(users.get(user_id), OrderUpdate(order))
        for user_id, fill in work.fills:
            self._to_user(users.get(user_id), FillUpdate(fill))
        for user_id, (cash, locked) in work.balances.items():
            self._to_user(users.get(user_id), BalanceUpdate(cash, locked, cash - locked))

    def _to_user(self, connections: set[Subscriber] | None, message: msgspec.Struct) -> None:
        if connections:
            self._broadcast(connections, _encode(message).decode())


def _gather_user_work(work: _UserWork, events: Sequence[object], watched: set[int]) -> None:
    for event in events:
        kind = type(event)
        if kind is TradeExecuted:
            t: TradeExecuted = event  # type: ignore[assignment]
            if t.taker_user_id in watched:
                price = t.yes_price if t.taker_outcome == "yes" else PAYOUT - t.yes_price
                work.order_ids[t.taker_order_id] = None
                work.fills.append(
                    (t.taker_user_id, FillView(t.taker_order_id, t.trade_id, price, t.quantity, t.kind))
                )  # fmt: skip
            if t.maker_user_id in watched:
                price = t.yes_price if t.maker_outcome == "yes" else PAYOUT - t.yes_price
                work.order_ids[t.maker_order_id] = None
                work.fills.append(
                    (t.maker_user_id, FillView(t.maker_order_id, t.trade_id, price, t.quantity, t.kind))
                )  # fmt: skip
        elif kind is OrderAccepted or kind is OrderCanceled:
            if event.user_id in watched:  # type: ignore[attr-defined]
                work.order_ids[event.order_id] = None  # type: ignore[attr-defined]
