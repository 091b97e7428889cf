"""Markets: creation (with the escrow account) and the market data traders read.

A market is created in Postgres first and then opened in the engine; recovery opens
every market it finds, so a crash between the two loses nothing. Best prices come from
the engine's book; last price and volume from committed trades.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from probo.db import connection
from probo.errors import not_found, unavailable, validation_error
from probo.ledger import LedgerWriter
from probo.markets.types import Level, Market, MarketCreate, MarketPage, OrderBook, Trade, TradePage
from probo.orderbook import Engine
from probo.pagination import page

PAYOUT = 1000
ID_MAX = 2**63 - 1
_MARKET_SELECT = """
SELECT m.id, m.title, m.description, m.category, m.rules, m.status, m.outcome, m.tick,
       m.settlement_fee_bps, m.closes_at, m.created_at,
       t.last_price, coalesce(v.volume, 0) AS volume
FROM markets m
LEFT JOIN LATERAL (SELECT yes_price AS last_price FROM trades
                   WHERE market_id = m.id ORDER BY id DESC LIMIT 1) t ON true
LEFT JOIN LATERAL (SELECT sum(quantity) AS volume FROM trades WHERE market_id = m.id) v ON true
"""


class MarketService:
    def __init__(
        self, *, pool: asyncpg.Pool, engine: Engine, writer: LedgerWriter, ack_timeout_ms: int
    ) -> None:
        self._pool = pool
        self._engine = engine
        self._writer = writer
        self._ack_timeout_s = ack_timeout_ms / 1000

    async def create(self, request: MarketCreate) -> Market:
        if PAYOUT % request.tick:
            raise validation_error("tick must divide 1000")
        if request.closes_at <= datetime.now(UTC):
            raise validation_error("closes_at must be in the future")
        async with connection(self._pool) as conn, conn.transaction():
            market_id = await conn.fetchval(
                "INSERT INTO markets (title, description, category, rules, closes_at, tick, settlement_fee_bps) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                request.title,
                request.description,
                request.category,
                request.rules,
                request.closes_at,
                request.tick,
                request.settlement_fee_bps,
            )
            await conn.execute(
                "INSERT INTO accounts (kind, market_id) VALUES ('market_escrow', $1)", market_id
            )
        self._engine.open_market(market_id, request.tick)
        return await self.get(market_id)

    def _market(self, row: asyncpg.Record) -> Market:
        best_yes = best_no = None
        if row["id"] in self._engine.exchange.markets:
            depth = self._engine.exchange.depth(row["id"], 1)
            best_yes = depth["yes"][0][0] if depth["yes"] else None
            best_no = depth["no"][0][0] if depth["no"] else None
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
            best_yes_bid=best_yes,
            best_no_bid=best_no,
            last_price=row["last_price"],
            volume=row["volume"],
        )

    async def get(self, market_id: int) -> Market:
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(f"{_MARKET_SELECT} WHERE m.id = $1", market_id)
        if row is None:
            raise not_found("market")
        return self._market(row)

    async def list(
        self, *, status: str | None, category: str | None, limit: int, before_id: int | None
    ) -> MarketPage:
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                f"{_MARKET_SELECT} WHERE m.id < $1 AND ($2::text IS NULL OR m.status = $2) "
                "AND ($3::text IS NULL OR m.category = $3) ORDER BY m.id DESC LIMIT $4",
                before_id or ID_MAX,
                status,
                category,
                limit + 1,
            )
        rows, cursor = page(rows, limit, lambda r: r["id"])
        return MarketPage(items=[self._market(r) for r in rows], next_cursor=cursor)

    async def order_book(self, market_id: int, depth: int | None) -> OrderBook:
        """The book as the engine holds it, answered once everything it shows has committed."""
        exchange = self._engine.exchange
        if market_id not in exchange.markets:
            async with connection(self._pool) as conn:
                if not await conn.fetchval("SELECT 1 FROM markets WHERE id = $1", market_id):
                    raise not_found("market")
            return OrderBook(market_id=market_id, seq=0, yes=[], no=[])
        levels = exchange.depth(market_id, depth)
        book = OrderBook(
            market_id=market_id,
            seq=self._engine.seq.get(market_id, 0),
            yes=[Level(p, q) for p, q in levels["yes"]],
            no=[Level(p, q) for p, q in levels["no"]],
        )
        if not await self._writer.drain(self._ack_timeout_s):
            raise unavailable("the ledger is not keeping up; retry", 1)
        return book

    async def trades(self, market_id: int, *, limit: int, before_id: int | None) -> TradePage:
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT id, yes_price, quantity, kind, taker_outcome, taker_side, created_at FROM trades "
                "WHERE market_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                market_id,
                before_id or ID_MAX,
                limit + 1,
            )
            if not rows and not await conn.fetchval(
                "SELECT 1 FROM markets WHERE id = $1", market_id
            ):
                raise not_found("market")
        rows, cursor = page(rows, limit, lambda r: r["id"])
        items = [
            Trade(
                id=r["id"],
                price=r["yes_price"],
                quantity=r["quantity"],
                kind=r["kind"],
                taker_outcome=r["taker_outcome"],
                taker_side=r["taker_side"],
                created_at=r["created_at"],
            )
            for r in rows
        ]
        return TradePage(items=items, next_cursor=cursor)
