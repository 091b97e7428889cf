"""Trading use cases: place, cancel and cancel-all through the engine; orders, fills and
the portfolio from Postgres.

Placing never touches the database: the payload is checked, the user's rate limit
taken, the market's `closes_at` compared with the engine's copy (an order is refused
once it has passed, even before the market clock closes the market), the command
queued on its market, and the answer built from the command's own events once the
ledger writer has committed them. A wait longer than `PROBO_ACK_TIMEOUT_MS` answers
503: the order may still commit, and the client finds it by `client_order_id`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import asyncpg

from probo.infra import Settings, connection, metrics
from probo.ledger import EntryRepeatsKey
from probo.orderbook import (
    Backpressure,
    CancelAll,
    CancelOrder,
    Engine,
    Entry,
    MergePairs,
    NotConfirmed,
    OrderAccepted,
    OrderCanceled,
    OrderDuplicate,
    OrderRejected,
    PairsChanged,
    PlaceOrder,
    SplitPairs,
    decided,
    own_price,
)
from probo.trading import store
from probo.trading.ratelimit import OrderRateLimiter
from probo.trading.types import (
    FillPage,
    LeaderboardEntry,
    LeaderboardPage,
    LeaderboardPeriod,
    LimitOrderRequest,
    Order,
    OrderPage,
    OrderRequest,
    PairsResult,
    Portfolio,
    PortfolioPosition,
    PortfolioTotals,
    average,
)
from probo.trading.views import order_from_events
from probo.web import ApiError, encode_cursor, not_found, page, rate_limited, unavailable

REPEATERS_TRACKED_MAX = 10_000
UNCONFIRMED = "not confirmed in time; it may still complete: look it up by client_order_id"
LEADERBOARD_PERIOD_DAYS: dict[str, int | None] = {"7d": 7, "30d": 30, "all": None}
PAIRS_UNCONFIRMED = (
    "not confirmed in time; it may still complete: check the position before retrying"
)
# HTTP status per engine rejection; anything not listed is 422.
REJECT_STATUS = {"not_found": 404, "market_not_open": 409, "order_not_open": 409}


def rejection(event: OrderRejected) -> ApiError:
    return ApiError(REJECT_STATUS.get(event.code, 422), event.code, event.message)


class RecentUsers:
    """User ids, at most `count_max`: the one added longest ago is forgotten first."""

    def __init__(self, count_max: int) -> None:
        self.count_max = count_max
        self._users: OrderedDict[int, None] = OrderedDict()

    def __contains__(self, user_id: int) -> bool:
        return user_id in self._users

    def add(self, user_id: int) -> None:
        self._users[user_id] = None
        if len(self._users) > self.count_max:
            self._users.popitem(last=False)


class TradingService:
    def __init__(self, *, settings: Settings, pool: asyncpg.Pool, engine: Engine) -> None:
        self._pool = pool
        self._engine = engine
        self._ack_timeout_s = settings.ack_timeout_ms / 1000
        self._limiter = OrderRateLimiter(settings.order_rate_limit)
        # Users who repeated a client order id older than the engine remembers: their
        # ids the engine does not know are looked up in Postgres before they can trade.
        self._repeaters = RecentUsers(REPEATERS_TRACKED_MAX)

    # --- commands ------------------------------------------------------------------------

    async def place(self, user_id: int, request: OrderRequest) -> tuple[Order, bool]:
        """(the order, whether it is new); a repeated client_order_id returns the original."""
        wait_s = self._limiter.take(user_id)
        if wait_s:
            metrics.ORDERS.labels("rate_limited").inc()
            raise rate_limited(math.ceil(wait_s), "too many orders; slow down")
        command = self._command(user_id, request)
        client_order_id = command.client_order_id
        if client_order_id is not None and self._may_repeat_an_old_id(user_id, client_order_id):
            stored = await self._stored_order(user_id, client_order_id)
            if stored is not None:
                metrics.ORDERS.labels("duplicate").inc()
                return stored, False
        try:
            entry = await self._decided(command)
        except EntryRepeatsKey:
            assert client_order_id is not None, "only a client order id repeats"
            self._repeaters.add(user_id)
            metrics.ORDERS.labels("duplicate").inc()
            return await self._original(user_id, client_order_id), False
        first = entry.events[0]
        if type(first) is OrderAccepted:
            metrics.ORDERS.labels("accepted").inc()
            return order_from_events(entry), True
        if type(first) is OrderDuplicate:
            metrics.ORDERS.labels("duplicate").inc()
            return await self._original(user_id, first.client_order_id), False
        metrics.ORDERS.labels("rejected").inc()
        raise rejection(first)  # type: ignore[arg-type]

    def _command(self, user_id: int, request: OrderRequest) -> PlaceOrder:
        """The engine's command for `request`; refused here past the market's closes_at."""
        # The request's type settles the shape (a limit order has a price, a market
        # order none and ioc only); the engine judges the price against the tick.
        if type(request) is LimitOrderRequest:
            order_type, price, time_in_force = "limit", request.price, request.time_in_force
        else:
            order_type, price, time_in_force = "market", None, "ioc"
        closes_at = self._engine.closes_at.get(request.market_id)
        if closes_at is not None and time.time() >= closes_at:
            # Past its closing time, even before the market clock has closed it.
            metrics.ORDERS.labels("rejected").inc()
            raise ApiError(409, "market_not_open", "the market has passed its closes_at")
        return PlaceOrder(
            user_id=user_id,
            market_id=request.market_id,
            outcome=request.outcome,
            side=request.side,
            type=order_type,
            quantity=request.quantity,
            price=price,
            time_in_force=time_in_force or "gtc",  # type: ignore[arg-type]
            client_order_id=request.client_order_id,
        )

    def _may_repeat_an_old_id(self, user_id: int, client_order_id: str) -> bool:
        """Whether this id may be one the engine has forgotten: only for a user who has
        repeated such an id before (the engine remembers open orders' and recent ids)."""
        return (
            user_id in self._repeaters
            and self._engine.exchange.client_order_ids.order_id(user_id, client_order_id) is None
        )

    async def _stored_order(self, user_id: int, client_order_id: str) -> Order | None:
        async with connection(self._pool) as conn:
            return await store.order_by_client_id(conn, user_id, client_order_id)

    async def _original(self, user_id: int, client_order_id: str) -> Order:
        """The order first placed with this id: committed before its repeat is answered."""
        original = await self._stored_order(user_id, client_order_id)
        if original is None:  # cannot be missing
            raise unavailable("the original order is not readable yet; retry", 1)
        return original

    async def cancel(self, user_id: int, order_id: int) -> Order:
        market_id = self._engine.exchange.order_market(order_id, user_id)
        if market_id is None:
            async with connection(self._pool) as conn:
                owner = await store.order_owner(conn, order_id)
            if owner != user_id:
                raise not_found("order")
            raise ApiError(409, "order_not_open", "the order is no longer open")
        entry = await self._decided(CancelOrder(user_id, market_id, order_id))
        first = entry.events[0] if entry.events else None
        if type(first) is OrderRejected:
            raise rejection(first)  # filled or canceled since it was looked up
        async with connection(self._pool) as conn:
            [order] = await store.orders_by_ids(conn, user_id, [order_id])
        return order

    async def cancel_all(self, user_id: int, market_id: int | None) -> list[Order]:
        markets = [market_id] if market_id is not None else list(self._engine.exchange.markets)
        if market_id is not None and market_id not in self._engine.exchange.markets:
            raise not_found("market")
        entries = await asyncio.gather(*(self._decided(CancelAll(user_id, m)) for m in markets))
        canceled = [
            e.order_id for entry in entries for e in entry.events if type(e) is OrderCanceled
        ]
        if not canceled:
            return []
        async with connection(self._pool) as conn:
            return await store.orders_by_ids(conn, user_id, canceled)

    async def pairs(self, user_id: int, market_id: int, kind: str, quantity: int) -> PairsResult:
        """Split cash into YES + NO pairs, or merge pairs back into cash, in the market's
        order with its orders; answered after commit. Raises ApiError."""
        wait_s = self._limiter.take(user_id)
        if wait_s:
            metrics.ORDERS.labels("rate_limited").inc()
            raise rate_limited(math.ceil(wait_s), "too many orders; slow down")
        closes_at = self._engine.closes_at.get(market_id)
        if closes_at is not None and time.time() >= closes_at:
            raise ApiError(409, "market_not_open", "the market has passed its closes_at")
        pairs_type = SplitPairs if kind == "split" else MergePairs
        command = pairs_type(user_id=user_id, market_id=market_id, quantity=quantity)
        entry = await self._decided(command, unconfirmed=PAIRS_UNCONFIRMED)
        first = entry.events[0]
        if type(first) is OrderRejected:
            raise rejection(first)
        assert type(first) is PairsChanged, first
        return PairsResult(
            market_id=market_id,
            quantity=quantity,
            yes_quantity=first.yes_quantity,
            no_quantity=first.no_quantity,
            balance=first.cash,
            available=first.cash - first.locked,
        )

    async def _decided(
        self,
        command: PlaceOrder | CancelOrder | CancelAll | SplitPairs | MergePairs,
        unconfirmed: str = UNCONFIRMED,
    ) -> Entry:
        try:
            return await decided(
                self._engine, command, timeout_s=self._ack_timeout_s, unconfirmed=unconfirmed
            )
        except Backpressure:
            metrics.ORDERS.labels("backpressure").inc()
            raise
        except NotConfirmed:
            metrics.ORDERS.labels("ack_timeout").inc()
            raise

    # --- reads ---------------------------------------------------------------------------

    async def order(self, user_id: int, order_id: int) -> Order:
        async with connection(self._pool) as conn:
            orders = await store.orders_by_ids(conn, user_id, [order_id])
        if not orders:
            raise not_found("order")
        return orders[0]

    async def orders(
        self,
        user_id: int,
        *,
        status: str | None,
        market_id: int | None,
        client_order_id: str | None,
        limit: int,
        before_id: int | None,
    ) -> OrderPage:
        async with connection(self._pool) as conn:
            rows = await store.list_orders(
                conn,
                user_id,
                status=status,
                market_id=market_id,
                client_order_id=client_order_id,
                before_id=before_id,
                limit=limit + 1,
            )
        items, cursor = page(rows, limit, lambda o: o.id)
        return OrderPage(items=items, next_cursor=cursor)

    async def fills(
        self, user_id: int, *, market_id: int | None, limit: int, before_id: int | None
    ) -> FillPage:
        async with connection(self._pool) as conn:
            rows = await store.list_fills(
                conn, user_id, market_id=market_id, before_id=before_id, limit=limit + 1
            )
        items, cursor = page(rows, limit, lambda f: f.trade_id)
        return FillPage(items=items, next_cursor=cursor)

    async def portfolio(self, user_id: int) -> Portfolio:
        async with connection(self._pool) as conn:
            rows = await store.positions(conn, user_id)
        positions = [self._position(r) for r in rows]
        totals = PortfolioTotals(
            invested=sum(p.invested for p in positions),
            mark_value=sum(p.mark_value for p in positions),
            unrealized_pnl=sum(p.unrealized_pnl for p in positions),
            realized_pnl=sum(p.realized_pnl for p in positions),
        )
        return Portfolio(positions=positions, totals=totals)

    async def position(self, user_id: int, market_id: int) -> PortfolioPosition:
        """One market's position (zeros when none). Raises ApiError 404 for no market."""
        async with connection(self._pool) as conn:
            row = await store.position(conn, user_id, market_id)
        if row is None:
            raise not_found("market")
        return self._position(row)

    async def leaderboard(
        self, period: LeaderboardPeriod, limit: int, offset: int
    ) -> LeaderboardPage:
        """Realised P&L per user in the period, best first, from the committed record."""
        days = LEADERBOARD_PERIOD_DAYS[period]
        since = None if days is None else datetime.now(UTC) - timedelta(days=days)
        async with connection(self._pool) as conn:
            rows = await store.leaderboard(conn, since, offset=offset, limit=limit + 1)
        items = [
            LeaderboardEntry(
                rank=offset + n + 1,
                display_name=r["display_name"] or f"trader-{r['user_id']}",
                realized_pnl=r["realized_pnl"],
                volume=r["volume"],
            )
            for n, r in enumerate(rows[:limit])
        ]
        more = len(rows) > limit
        return LeaderboardPage(
            items=items, next_cursor=encode_cursor(offset + limit) if more else None
        )

    def _position(self, r: asyncpg.Record) -> PortfolioPosition:
        """A position as committed, marked to the engine's best bids while it trades."""
        exchange = self._engine.exchange
        market_id = r["market_id"]
        yes, no = r["yes_quantity"], r["no_quantity"]
        invested = r["yes_cost"] + r["no_cost"]
        mark = 0
        if r["status"] in ("open", "paused") and market_id in exchange.markets:
            depth = exchange.depth(market_id, 1)
            best_yes = depth["yes"][0][0] if depth["yes"] else 0
            best_no = depth["no"][0][0] if depth["no"] else 0
            mark = yes * best_yes + no * best_no
        elif r["status"] == "closed":
            # No book any more: the last trade's price, else cost (nothing unrealised).
            last = r["last_price"]
            mark = invested if last is None else yes * last + no * own_price("no", last)
        return PortfolioPosition(
            market_id=market_id,
            title=r["title"],
            status=r["status"],
            yes_quantity=yes,
            no_quantity=no,
            yes_locked=r["yes_locked"],
            no_locked=r["no_locked"],
            yes_average_price=average(r["yes_cost"], yes),
            no_average_price=average(r["no_cost"], no),
            invested=invested,
            mark_value=mark,
            unrealized_pnl=mark - invested,
            realized_pnl=r["realized_pnl"],
            payout=r["payout"],
        )
