"""`Hub`: the live feeds, published from committed ledger batches only, in commit order.

The ledger writer calls `committed(batch)` right after each commit. For markets the
hub applies the events to each market's `CommittedBook` at once and gathers trades and
status changes; within `COALESCE_S` it flushes every market that changed: one `book`
delta (the next `seq`, only levels whose total changed), one `trade` message with the
window's trades, then `market` messages. A status change first sends what came before
it and goes out at once, so `market` messages keep their place among the others. Each
message is encoded and framed once for its whole room, and each subscriber gets the
flush's frames in one write.

REST `/orderbook` and a new subscriber's snapshot first flush their market, so the
book they see is exactly the one after the last `book` message of that `seq`; the
encoded snapshot is kept until the next `seq`.

Which engine events the market feeds read and which they ignore is listed once, below
the imports; any other event is a bug and raises (as it does in the committed book and
the user channel), never skipped.

The user channel is `UserFeeds` (users.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime

import asyncpg
import msgspec

from probo.orderbook import (
    Engine,
    Entry,
    Event,
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
)
from probo.realtime.book import CommittedBook
from probo.realtime.frames import text_frame
from probo.realtime.subscriber import Subscriber
from probo.realtime.ticker import Ticker
from probo.realtime.types import (
    BookDelta,
    Level,
    LevelChange,
    MarketChanged,
    OrderBook,
    Snapshot,
    Trades,
    TradeView,
)
from probo.realtime.users import UserFeeds

COALESCE_S = 0.025  # book changes and trades wait at most this long

_encode = msgspec.json.Encoder().encode

# What each engine event is to the market feeds. A command that changes no market
# (refused, repeated, a withdrawal) sends nothing; otherwise its trades go out as
# `trade` messages, its status changes as `market` messages, and its orders, trades and
# cancels move the committed book (book.py).
_CHANGES_NO_MARKET = (
    OrderRejected,
    OrderDuplicate,
    WithdrawalAccepted,
    WithdrawalRejected,
    WithdrawalDuplicate,
    PairsChanged,
)
_STATUS_CHANGES = (MarketStatusChanged, Settlement)
_BOOK_ONLY = (OrderAccepted, OrderCanceled)


def market_channel(market_id: int) -> str:
    return f"market:{market_id}"


def _market_news(events: Sequence[Event]) -> tuple[list[TradeExecuted], list[Event]]:
    """(trades, status changes) of one command's events."""
    trades: list[TradeExecuted] = []
    status_changes: list[Event] = []
    for event in events:
        kind = type(event)
        if kind is TradeExecuted:
            trades.append(event)  # type: ignore[arg-type]
        elif kind in _STATUS_CHANGES:
            status_changes.append(event)
        elif kind not in _BOOK_ONLY and kind not in _CHANGES_NO_MARKET:
            raise AssertionError(f"the hub does not know {kind.__name__} events")
    return trades, status_changes


def _trade_view(trade: TradeExecuted, at: datetime) -> TradeView:
    return TradeView(
        trade.trade_id, trade.yes_price, trade.quantity, trade.kind, trade.taker_outcome,
        trade.taker_side, at,
    )  # fmt: skip


def _market_changed(channel: str, change: Event) -> MarketChanged:
    """The `market` message of a status change or a resolution."""
    if type(change) is Settlement:
        return MarketChanged(channel, change.market_id, "resolved", change.outcome)
    assert type(change) is MarketStatusChanged, change
    return MarketChanged(channel, change.market_id, change.status)


class Hub:
    def __init__(
        self,
        engine: Engine,
        pool: asyncpg.Pool,
        is_revoked: Callable[[str], bool] = lambda jti: False,
        coalesce_s: float = COALESCE_S,
    ) -> None:
        self._engine = engine
        self._coalesce_s = coalesce_s
        self._books: dict[int, CommittedBook] = {}
        self._rooms: dict[int, set[Subscriber]] = {}
        self._trades: dict[int, list[TradeView]] = {}  # market -> trades not yet sent
        self._statuses: dict[int, list[MarketChanged]] = {}  # market -> not yet sent
        self._changed: set[int] = set()  # markets with something to flush
        self._snapshots: dict[int, tuple[int, bytes]] = {}  # market -> (seq, encoded)
        self._flush: asyncio.TimerHandle | None = None
        self.users = UserFeeds(engine, pool, is_revoked)
        self.ticker = Ticker(self._best_bids)

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
        for entry in batch:
            events = entry.events
            if events and type(events[0]) not in _CHANGES_NO_MARKET:
                self._apply(events, entry)
        if (self._changed or self.ticker.pending) and self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self._coalesce_s, self.flush)
        self.users.committed(batch)

    def _apply(self, events: Sequence[Event], entry: Entry) -> None:
        """One committed command about a market: its book, trades and status changes."""
        trades, status_changes = _market_news(events)
        market_id = events[0].market_id  # type: ignore[union-attr]
        if status_changes:
            self._flush_now(market_id)  # what came before the change goes first
        book = self._book(market_id)
        book.apply(events)
        self.ticker.touched(market_id, trades)
        if book.pending:
            self._changed.add(market_id)
        if market_id not in self._rooms:
            return
        if trades:
            views = [_trade_view(trade, entry.at) for trade in trades]
            self._trades.setdefault(market_id, []).extend(views)
            self._changed.add(market_id)
        if status_changes:
            channel = market_channel(market_id)
            messages = [_market_changed(channel, change) for change in status_changes]
            self._statuses.setdefault(market_id, []).extend(messages)
            self._changed.add(market_id)
            self._flush_now(market_id)

    # --- market rooms ----------------------------------------------------------------

    def flush(self) -> None:
        """Send what every changed market gathered (the coalescing window ends)."""
        self._flush = None
        changed, self._changed = self._changed, set()
        for market_id in changed:
            self._flush_market(market_id)
        self._flush_ticker()

    def _flush_market(self, market_id: int) -> None:
        book = self._books.get(market_id)
        if book is None:
            return
        room = self._rooms.get(market_id)
        channel = market_channel(market_id)
        payloads: list[bytes] = []
        changes = book.take_changes()
        if changes:
            book.seq += 1  # counted with or without subscribers: REST shows it too
            if room:
                delta = BookDelta(channel, book.seq, [LevelChange(*c) for c in changes])  # type: ignore[arg-type]
                payloads.append(_encode(delta))
        trades = self._trades.pop(market_id, None)
        if trades and room:
            payloads.append(_encode(Trades(channel, trades)))
        for status in self._statuses.pop(market_id, ()):
            if room:
                payloads.append(_encode(status))
        if payloads and room:
            self._broadcast(room, payloads)

    def _flush_now(self, market_id: int) -> None:
        if market_id in self._changed:
            self._changed.discard(market_id)
            self._flush_market(market_id)

    def _broadcast(self, room: set[Subscriber], payloads: list[bytes]) -> None:
        frames = b"".join(text_frame(p) for p in payloads)
        behind = [subscriber for subscriber in room if not subscriber.offer(frames, payloads)]
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

    def _snapshot(self, market_id: int) -> bytes:
        """The encoded snapshot at the current `seq`, built once per `seq`."""
        self._flush_now(market_id)
        seq = self._book(market_id).seq
        cached = self._snapshots.get(market_id)
        if cached is not None and cached[0] == seq:
            return cached[1]
        book = self.order_book(market_id)
        assert book is not None
        encoded = _encode(Snapshot(market_channel(market_id), seq, book))
        self._snapshots[market_id] = (seq, encoded)
        return encoded

    def join_market(self, subscriber: Subscriber, market_id: int) -> bool:
        """Snapshot then deltas; False for an unknown market. Joining again re-snapshots."""
        if market_id not in self._engine.exchange.markets:
            return False
        snapshot = self._snapshot(market_id)
        if subscriber.offer(text_frame(snapshot), (snapshot,)):
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

    # --- the ticker channel (ticker.py) ----------------------------------------------

    def _best_bids(self, market_id: int) -> tuple[int | None, int | None]:
        """(best YES bid, best NO bid) of the committed book."""
        book = self._books.get(market_id)
        if book is None:
            return None, None
        best_yes = best_no = None
        for outcome, price in book.levels:
            if outcome == "yes":
                if best_yes is None or price > best_yes:
                    best_yes = price
            elif best_no is None or price > best_no:
                best_no = price
        return best_yes, best_no

    def _flush_ticker(self) -> None:
        """The ticker lines of this window; more in the next window if some wait."""
        payloads = self.ticker.take()
        room = self.ticker.room
        if payloads and room:
            self._broadcast(room, payloads)
        if self.ticker.pending and self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self._coalesce_s, self.flush)

    # --- the user channel ------------------------------------------------------------

    def join_user(self, subscriber: Subscriber) -> None:
        self.users.join(subscriber)

    def leave_user(self, subscriber: Subscriber) -> None:
        self.users.leave(subscriber)

    def leave(self, subscriber: Subscriber) -> None:
        """Out of every room (a closed or kicked connection)."""
        self.ticker.leave(subscriber)
        for market_id in list(subscriber.markets):
            self.leave_market(subscriber, market_id)
        self.users.leave(subscriber)

    async def run_user_feed(self) -> None:
        await asyncio.gather(self.users.run(), self.users.check_sessions())
