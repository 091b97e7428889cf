"""Markets: creation, the lifecycle, resolution, and the market data traders read.

A market is created in Postgres first and then opened in the engine; recovery opens
every market it finds, so a crash between the two loses nothing. Lifecycle steps
(pause, resume, close, resolve) go through the market's engine queue like orders, so
they fall exactly between two orders, and are answered once their ledger batch has
committed. A resolution is recorded in `markets.resolving` before the engine pays
anyone; the payouts then commit in one batch with the market's new status. A
resolution the engine never took (or refused) is cleared again, so the admin can ask
anew; one recorded but not committed (a restart, a timed-out acknowledgement) is
finished by the market clock (`finish_resolutions`).

Best prices and the order book come from the committed book the live feeds keep
(probo/realtime), so REST and WebSocket agree on `seq`; last price and volume from the aggregates
the ledger writer keeps on the market row; candles from trades, aggregated in SQL.
The SQL is in store.py.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import asyncpg
from loguru import logger

from probo.infra import connection
from probo.markets import store
from probo.markets.cursors import (
    decode_market_cursor,
    decode_watch_cursor,
    encode_market_cursor,
    encode_watch_cursor,
)
from probo.markets.stats import MarketStats
from probo.markets.types import (
    CandlePage,
    Category,
    CategoryList,
    Interval,
    Market,
    MarketCreate,
    MarketEdit,
    MarketPage,
    Outcome,
    Sort,
    TradePage,
    Watch,
)
from probo.orderbook import (
    CONTRACT_PAYOUT,
    CloseMarket,
    Engine,
    EngineUnavailable,
    Entry,
    InvalidMarketTransition,
    MarketCommand,
    MarketResolved,
    PauseMarket,
    ResolveMarket,
    ResumeMarket,
    UnknownMarket,
    decided,
)
from probo.realtime import Hub, OrderBook
from probo.web import ApiError, encode_cursor, not_found, page, validation_error

INTERVALS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1),
             "1d": timedelta(days=1)}  # fmt: skip
# Candles are aligned to whole intervals since the Unix epoch (UTC days for `1d`).
# A page spans at most `limit` intervals back from the newest trade before the cursor,
# so it reads a bounded slice of trades however long the market's history is.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
# A candles cursor is epoch seconds; past FAR_FUTURE it is none we issued (and soon
# beyond what a datetime can hold).
CANDLE_CURSOR_SECONDS_MAX = int((FAR_FUTURE - EPOCH).total_seconds())
CATEGORIES_MAX = 1000  # categories listed, the most open markets first


class MarketService:
    def __init__(
        self, *, pool: asyncpg.Pool, engine: Engine, hub: Hub, ack_timeout_ms: int
    ) -> None:
        self._pool = pool
        self._engine = engine
        self._hub = hub
        self._ack_timeout_s = ack_timeout_ms / 1000
        self.stats = MarketStats(pool)
        # Resolutions this process is paying now, per market (concurrent requests count
        # once each): the market clock leaves them alone, and a failed one is cleared
        # only by the last of them.
        self._resolving_here: defaultdict[int, int] = defaultdict(int)

    async def create(self, request: MarketCreate) -> Market:
        if CONTRACT_PAYOUT % request.tick:
            raise validation_error("tick must divide 1000")
        try:  # a time zone can push the last representable instants past year 9999 in UTC
            closes_at = request.closes_at.astimezone(UTC)
        except OverflowError:
            raise validation_error("closes_at is out of range") from None
        if closes_at <= datetime.now(UTC):
            raise validation_error("closes_at must be in the future")
        async with connection(self._pool) as conn, conn.transaction():
            market_id = await store.insert_market(conn, request, closes_at)
            await store.insert_escrow_account(conn, market_id)
            await store.insert_market_stats(conn, market_id)
        self._engine.open_market(market_id, request.tick, closes_at.timestamp())
        return await self.get(market_id)

    # --- lifecycle -------------------------------------------------------------------------

    async def pause(self, market_id: int) -> Market:
        await self._change(PauseMarket(market_id))
        return await self.get(market_id)

    async def resume(self, market_id: int) -> Market:
        await self._change(ResumeMarket(market_id))
        return await self.get(market_id)

    async def close(self, market_id: int) -> Market:
        await self._change(CloseMarket(market_id))
        return await self.get(market_id)

    async def resolve(self, market_id: int, outcome: Outcome) -> Market:
        """Record the resolution, then pay it through the engine (closing first if open)."""
        self._resolving_here[market_id] += 1
        try:
            fee_bps = await self._record_resolution(market_id, outcome)
            await self._pay_resolution(
                ResolveMarket(market_id, outcome, fee_bps), forget_if_not_queued=True
            )
        finally:
            self._resolving_here[market_id] -= 1
            if not self._resolving_here[market_id]:
                del self._resolving_here[market_id]
        return await self.get(market_id)

    async def _record_resolution(self, market_id: int, outcome: Outcome) -> int:
        """Record `outcome` unless another is recorded; the market's fee in basis points."""
        async with connection(self._pool) as conn:
            row = await store.record_resolution(conn, market_id, outcome)
            if row is None:
                if not await store.market_exists(conn, market_id):
                    raise not_found("market")
                raise _market_resolved(market_id)
        if row["resolving"] != outcome:
            raise ApiError(
                409,
                "market_resolved",
                f"market {market_id} is being resolved as {row['resolving']}",
            )
        return row["settlement_fee_bps"]

    async def _pay_resolution(self, command: ResolveMarket, *, forget_if_not_queued: bool) -> None:
        """Pay a recorded resolution through the engine; returns once it has committed.

        A resolution the engine refused, and (when `forget_if_not_queued`) one it never
        took, is forgotten so that another can be asked. One that was queued but not
        confirmed in time stays recorded: it is on its way to the ledger.
        """
        try:
            await self._decided(command)
        except (UnknownMarket, EngineUnavailable):  # never queued
            if forget_if_not_queued:
                await self._forget_resolution(command.market_id)
            raise
        except ApiError as exc:
            # Refused by the engine, or by the ledger (a bug): nothing was paid.
            if exc.code in ("invalid_transition", "internal_error"):
                await self._forget_resolution(command.market_id)
            raise
        except Exception:  # the engine failed on it (logged there): nothing was paid
            await self._forget_resolution(command.market_id)
            raise

    async def _forget_resolution(self, market_id: int) -> None:
        """Clear a recorded resolution nobody is paying, unless another request of this
        process is paying it now. If Postgres refuses, the market clock finishes it."""
        if self._resolving_here[market_id] > 1:
            return
        try:
            async with connection(self._pool) as conn:
                await store.clear_resolution(conn, market_id)
        except Exception as exc:
            logger.warning(
                "market {}: a resolution the engine did not take stays recorded ({!r})",
                market_id,
                exc,
            )

    async def finish_resolutions(self, count_max: int) -> int:
        """Pay up to `count_max` recorded resolutions that have not committed (a restart,
        an acknowledgement that timed out, a clear that failed); how many were paid.

        Markets the engine already shows resolved are on their way to the ledger, and
        those a request of this process is resolving now are left to it. A repeat is
        harmless: the engine answers MarketResolved.
        """
        async with connection(self._pool) as conn:
            rows = await store.unfinished_resolutions(conn, count_max)
        markets = self._engine.exchange.markets
        pending: list[ResolveMarket] = []
        for market_id, outcome, fee_bps in rows:
            market = markets.get(market_id)
            if market is not None and market.status == "resolved":
                continue  # on its way to the ledger
            if market_id in self._resolving_here:
                continue  # a request is paying it now
            pending.append(ResolveMarket(market_id, outcome, fee_bps))
        paid = await asyncio.gather(*(self._finish_resolution(c) for c in pending))
        return sum(paid)

    async def _finish_resolution(self, command: ResolveMarket) -> bool:
        market_id = command.market_id
        logger.warning("finishing the resolution of market {} as {}", market_id, command.outcome)
        self._resolving_here[market_id] += 1
        try:
            await self._pay_resolution(command, forget_if_not_queued=False)
        except ApiError as exc:
            if exc.code != "market_resolved":
                logger.error("market {} could not be resolved: {}", market_id, exc.message)
            return False
        except Exception as exc:
            logger.opt(exception=exc).error("market {} could not be resolved", market_id)
            return False
        finally:
            self._resolving_here[market_id] -= 1
            if not self._resolving_here[market_id]:
                del self._resolving_here[market_id]
        return True

    async def close_due(self, count_max: int) -> int:
        """Close up to `count_max` markets whose `closes_at` has passed; how many closed.

        The closes are asked for together, so a market slow to confirm does not hold
        back the others."""
        async with connection(self._pool) as conn:
            due = await store.due_to_close(conn, count_max)
        due_ids = []
        for market_id in due:
            market = self._engine.exchange.markets.get(market_id)
            if market is not None and market.status in ("open", "paused"):
                due_ids.append(market_id)  # else its close is on the way to the ledger
        closed = await asyncio.gather(*(self._closed_at_closes_at(m) for m in due_ids))
        return sum(closed)

    async def _closed_at_closes_at(self, market_id: int) -> bool:
        try:
            await self._decided(CloseMarket(market_id))
        except ApiError as exc:
            logger.warning("market {} not closed at closes_at: {}", market_id, exc.message)
            return False
        except Exception as exc:
            logger.opt(exception=exc).error("market {} not closed at closes_at", market_id)
            return False
        logger.info("market {} closed at closes_at", market_id)
        return True

    async def _change(self, command: MarketCommand) -> None:
        """Through the market's queue; returns once the change has committed."""
        await self._decided(command)

    async def _decided(self, command: MarketCommand) -> Entry:
        try:
            return await decided(
                self._engine,
                command,
                timeout_s=self._ack_timeout_s,
                unconfirmed="not confirmed in time; it may still complete",
            )
        except MarketResolved:
            raise _market_resolved(command.market_id) from None
        except InvalidMarketTransition as exc:
            raise ApiError(409, "invalid_transition", str(exc)) from None

    # --- market data -------------------------------------------------------------------------

    def _market(self, row: asyncpg.Record) -> Market:
        best_yes = best_no = None
        book = self._hub.order_book(row["id"], 1)
        if book is not None:
            best_yes = book.yes[0].price if book.yes else None
            best_no = book.no[0].price if book.no else None
        return Market(
            id=row["id"],
            title=row["title"],
            description=row["description"],
            category=row["category"],
            rules=row["rules"],
            status=row["status"],
            outcome=row["outcome"],
            tick=row["tick"],
            settlement_fee_bps=row["settlement_fee_bps"],
            closes_at=row["closes_at"],
            created_at=row["created_at"],
            resolved_at=row["resolved_at"],
            best_yes_bid=best_yes,
            best_no_bid=best_no,
            last_price=row["last_price"],
            volume=row["volume"],
            volume_24h=row["volume_24h"],
            price_change_24h=(
                None
                if row["last_price"] is None or row["price_24h_ago"] is None
                else row["last_price"] - row["price_24h_ago"]
            ),
            open_interest=row["open_interest"],
        )

    async def get(self, market_id: int) -> Market:
        async with connection(self._pool) as conn:
            row = await store.market_row(conn, market_id)
        if row is None:
            raise not_found("market")
        return self._market(row)

    async def list(
        self,
        *,
        status: str | None,
        category: str | None,
        limit: int,
        cursor: str | None,
        q: str | None = None,
        sort: Sort = "new",
    ) -> MarketPage:
        """Markets in `sort` order (`new`: newest first; `closing`: soonest `closes_at`
        first; `volume`: most traded in 24 h first), filtered; `q` keeps those whose
        title or description has a word starting with each of its words."""
        after = decode_market_cursor(sort, cursor)
        if q is not None and not any(c.isalnum() for c in q):
            q = None  # no word to look for: no filter
        async with connection(self._pool) as conn:
            rows = await store.market_rows(
                conn,
                status=status,
                category=category,
                q=q,
                sort=sort,
                after=after,
                limit=limit + 1,
            )
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = encode_market_cursor(
                sort, last["id"], last["closes_at"], last["volume_24h"]
            )
        return MarketPage(items=[self._market(r) for r in rows], next_cursor=next_cursor)

    async def categories(self) -> CategoryList:
        async with connection(self._pool) as conn:
            rows = await store.categories(conn, CATEGORIES_MAX)
        return CategoryList(
            items=[Category(category=r["category"], open_markets=r["open_markets"]) for r in rows]
        )

    async def edit(self, market_id: int, edit: MarketEdit) -> Market:
        """Change what the admin gave of an open or paused market; `closes_at` only later
        than the current one and than now. The engine learns a new `closes_at` once it has committed."""
        closes_at = None
        if edit.closes_at is not None:
            try:
                closes_at = edit.closes_at.astimezone(UTC)
            except OverflowError:
                raise validation_error("closes_at is out of range") from None
        async with connection(self._pool) as conn:
            row = await store.edit_market(
                conn,
                market_id,
                title=edit.title,
                description=edit.description,
                category=edit.category,
                rules=edit.rules,
                closes_at=closes_at,
            )
            if row is None:
                state = await store.market_state(conn, market_id)
                if state is None:
                    raise not_found("market")
                if state["status"] not in ("open", "paused"):
                    raise ApiError(
                        409, "invalid_transition", f"market {market_id} is {state['status']}"
                    )
                raise validation_error("closes_at must be later than now and than the current one")
        if closes_at is not None:
            # The engine refuses orders from `closes_at` on: it learns the new one now.
            # open_market on an open market only records it (and keeps it across a rebuild
            # under way, which may have read the old one).
            self._engine.open_market(market_id, row["tick"], row["closes_at"].timestamp())
        return await self.get(market_id)

    # --- the watchlist -----------------------------------------------------------------------

    async def watch(self, user_id: int, market_id: int) -> Watch:
        async with connection(self._pool) as conn:
            if not await store.market_exists(conn, market_id):
                raise not_found("market")
            await store.watch(conn, user_id, market_id)
        return Watch(market_id=market_id, watched=True)

    async def unwatch(self, user_id: int, market_id: int) -> Watch:
        async with connection(self._pool) as conn:
            if not await store.market_exists(conn, market_id):
                raise not_found("market")
            await store.unwatch(conn, user_id, market_id)
        return Watch(market_id=market_id, watched=False)

    async def watchlist(self, user_id: int, *, limit: int, cursor: str | None) -> MarketPage:
        """The markets the user watches, the most recently watched first."""
        after = decode_watch_cursor(cursor)
        async with connection(self._pool) as conn:
            rows = await store.watched_rows(conn, user_id, after=after, limit=limit + 1)
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_watch_cursor(rows[-1]["watched_at"], rows[-1]["id"])
        return MarketPage(items=[self._market(r) for r in rows], next_cursor=next_cursor)

    async def order_book(self, market_id: int, depth: int | None) -> OrderBook:
        """The committed book, with the `seq` of the WebSocket deltas it matches."""
        book = self._hub.order_book(market_id, depth)
        if book is None:
            async with connection(self._pool) as conn:
                if not await store.market_exists(conn, market_id):
                    raise not_found("market")
            return OrderBook(market_id=market_id, seq=0, yes=[], no=[])
        return book

    async def trades(self, market_id: int, *, limit: int, before_id: int | None) -> TradePage:
        async with connection(self._pool) as conn:
            trades = await store.trades(conn, market_id, before_id=before_id, limit=limit + 1)
            if not trades and not await store.market_exists(conn, market_id):
                raise not_found("market")
        items, cursor = page(trades, limit, lambda t: t.id)
        return TradePage(items=items, next_cursor=cursor)

    async def candles(
        self, market_id: int, interval: Interval, *, limit: int, before: int | None
    ) -> CandlePage:
        """OHLCV of the YES price per `interval`, newest first; intervals without a
        trade are left out. `before` is a cursor: the start (epoch seconds) of the
        oldest candle of the previous page."""
        step = INTERVALS[interval]
        if before is not None and before > CANDLE_CURSOR_SECONDS_MAX:
            raise validation_error("invalid cursor", status_code=400)  # never one we issued
        end = EPOCH + timedelta(seconds=before) if before is not None else FAR_FUTURE
        async with connection(self._pool) as conn:
            newest = await store.newest_trade_before(conn, market_id, end)
            if newest is None:
                if not await store.market_exists(conn, market_id):
                    raise not_found("market")
                return CandlePage(items=[], next_cursor=None)
            newest_start = EPOCH + step * ((newest - EPOCH) // step)
            start = newest_start - step * (limit - 1)
            items = await store.candles(conn, market_id, step, start=start, end=end)
            more = await store.newest_trade_before(conn, market_id, start) is not None
        cursor = encode_cursor(int((start - EPOCH).total_seconds())) if more else None
        return CandlePage(items=items, next_cursor=cursor)


def _market_resolved(market_id: int) -> ApiError:
    return ApiError(409, "market_resolved", f"market {market_id} is resolved")
