"""The ordered group-commit ledger writer: the engine's events into Postgres.

Every market's engine task and the wallet append `Entry`s (one command's events) to
one queue, in the order the engine decided them. One consumer takes whatever has
queued, up to `BATCH_ENTRIES_MAX`, and commits it with one call of the database
function `probo_write_batch` (one round trip, one transaction of set-based
statements): orders, trades, transfers, account balances, positions, withdrawals,
markets (status, outcome, volume, last price) (large batches go by COPY instead: more round trips, cheaper rows;
the two are checked against each other). Only then does each entry's waiter get its result, so nothing is
acknowledged before it is durable. While one batch commits the next one gathers:
that is the group commit, and it needs no timer.

If Postgres is away the batch is retried, with backoff, until it commits; the engine
meanwhile goes on (bounded by `backlog_max`, which the order path refuses beyond).
The translation of events into rows is pure (`batch.py`) and done once per batch; a
failed batch is retried with exactly the same rows until it commits. The writer has
its own connection, so it never waits behind requests for a pooled one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
from loguru import logger

from probo import metrics
from probo.db import CONNECT_TIMEOUT_S, UNAVAILABLE_ERRORS
from probo.ledger.batch import BatchRows, PositionCost, build_batch
from probo.orderbook import Entry, Settlement

BATCH_ENTRIES_MAX = 4096  # commands per transaction
# A batch of this many commands or more is written by COPY (throughput: a backlog
# after an outage, bursts); smaller ones by one call (latency: one round trip).
COPY_BATCH_MIN = 512
RETRY_BACKOFF_S = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)

# One call, one round trip, its own transaction (schema.sql has the function).
_WRITE_BATCH = """
SELECT probo_write_batch(
    $1::orders[],
    $2::bigint[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::timestamptz[],
    $8::trades[],
    $9::bigint[], $10::bigint[], $11::bigint[], $12::text[], $13::text[], $14::bigint[], $15::timestamptz[],
    $16::bigint[], $17::bigint[],
    $18::positions[],
    $19::withdrawals[],
    $20::bigint[], $21::text[], $22::text[], $23::bigint[], $24::int[],
    $25::bigint[]
)
"""


# Large batches go by COPY: a few more round trips, much cheaper rows.
_ORDER_COLUMNS = (
    "id", "user_id", "market_id", "outcome", "side", "type", "time_in_force", "price", "quantity",
    "filled_quantity", "cost", "status", "cancel_reason", "client_order_id", "created_at", "updated_at",
)  # fmt: skip
_TRADE_COLUMNS = (
    "id", "market_id", "kind", "yes_price", "quantity", "taker_order_id", "taker_user_id", "taker_outcome",
    "taker_side", "maker_order_id", "maker_user_id", "maker_outcome", "maker_side", "created_at",
)  # fmt: skip
_TRANSFER_COLUMNS = (
    "debit_account_id",
    "credit_account_id",
    "amount",
    "kind",
    "ref_type",
    "ref_id",
    "created_at",
)
_WITHDRAWAL_COLUMNS = ("id", "user_id", "idempotency_key", "amount", "status", "created_at")

_UPDATE_ORDERS = """
UPDATE orders AS o SET
    filled_quantity = o.filled_quantity + d.filled,
    cost = o.cost + d.cost,
    status = coalesce(d.status, o.status),
    cancel_reason = coalesce(d.reason, o.cancel_reason),
    updated_at = d.at
FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[])
    AS d(id, filled, cost, status, reason, at)
WHERE o.id = d.id
"""
_LOCK_ACCOUNTS = "SELECT id FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"
_APPLY_DELTAS = """
UPDATE accounts AS a SET balance = a.balance + d.delta
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, delta)
WHERE a.id = d.id
"""
_UPSERT_POSITIONS = """
INSERT INTO positions (user_id, market_id, yes_quantity, no_quantity, yes_cost, no_cost, realized_pnl, payout)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                     $7::bigint[], $8::bigint[])
ON CONFLICT (user_id, market_id) DO UPDATE SET
    yes_quantity = excluded.yes_quantity, no_quantity = excluded.no_quantity,
    yes_cost = excluded.yes_cost, no_cost = excluded.no_cost, realized_pnl = excluded.realized_pnl,
    payout = excluded.payout
"""
_UPDATE_MARKETS = """
UPDATE markets AS m SET
    status = coalesce(d.status, m.status),
    outcome = coalesce(d.outcome, m.outcome),
    resolved_at = CASE WHEN d.outcome IS NULL THEN m.resolved_at ELSE now() END,
    volume = m.volume + d.volume,
    last_price = coalesce(d.last_price, m.last_price)
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::int[])
    AS d(id, status, outcome, volume, last_price)
WHERE m.id = d.id
"""
_NOT_NEW = "UPDATE users SET is_new = false WHERE id = ANY($1::bigint[]) AND is_new"


class LedgerWriter:
    def __init__(
        self, database_url: str, *, backlog_max: int, copy_batch_min: int = COPY_BATCH_MIN
    ) -> None:
        self._database_url = database_url
        self.copy_batch_min = copy_batch_min  # batches this large are written by COPY
        self.backlog_max = backlog_max  # entries not yet committed; the order path refuses beyond
        self._pending: deque[Entry] = deque()
        self._in_progress = 0
        self._wakeup = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._cash_accounts: dict[int, int] = {}  # user id -> user_cash account id
        self._escrow_accounts: dict[int, int] = {}  # market id -> market_escrow account id
        # As of the last translated batch (a batch is retried until it commits, never dropped).
        self._positions: dict[tuple[int, int], PositionCost] = {}
        self._not_new: set[int] = set()
        self.stalled_since: float | None = None  # monotonic time of the first failed try
        # Told of every batch right after it commits, in commit order, before any waiter
        # hears: the live feeds (probo/realtime) publish from here. Must not raise.
        self.on_commit: Callable[[list[Entry]], None] | None = None

    # --- the engine's side -------------------------------------------------------------

    def append(self, entry: Entry) -> None:
        """Queue one command's events; `entry.waiter` gets the entry once it commits."""
        self._pending.append(entry)
        if not self._wakeup.is_set():
            self._wakeup.set()

    @property
    def backlog(self) -> int:
        """Entries decided by the engine and not yet committed."""
        return len(self._pending) + self._in_progress

    def barrier(self) -> asyncio.Future[Entry]:
        """A future done when everything appended so far has committed."""
        waiter: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self.append(Entry((), datetime.now().astimezone(), waiter))
        return waiter

    # --- start and stop ------------------------------------------------------------------

    async def load(self, conn: asyncpg.Connection) -> None:
        """Read the account ids and position cost bases the translation needs."""
        for row in await conn.fetch(
            "SELECT id, user_id, market_id FROM accounts WHERE user_id IS NOT NULL OR market_id IS NOT NULL"
        ):
            if row["user_id"] is not None:
                self._cash_accounts[row["user_id"]] = row["id"]
            else:
                self._escrow_accounts[row["market_id"]] = row["id"]
        positions = await conn.fetch(
            "SELECT user_id, market_id, yes_quantity, no_quantity, yes_cost, no_cost, realized_pnl, "
            "payout FROM positions"
        )
        self._positions = {
            (r["user_id"], r["market_id"]): PositionCost(r[2], r[3], r[4], r[5], r[6], r[7])
            for r in positions
        }

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # --- the consumer ------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._pending:
                    count = min(len(self._pending), BATCH_ENTRIES_MAX)
                    batch = [self._pending.popleft() for _ in range(count)]
                    self._in_progress = count
                    await self._commit_until_done(batch)
                    self._in_progress = 0
                    if self.on_commit is not None:
                        try:
                            self.on_commit(batch)
                        except Exception as exc:  # the feeds' bug must not stop the ledger
                            logger.opt(exception=exc).error("publishing a committed batch failed")
                    for entry in batch:
                        waiter = entry.waiter
                        if waiter is not None:
                            # The future will hold the entry: drop the entry's hold on the
                            # future, or the pair is a cycle only the collector can free.
                            entry.waiter = None
                            if not waiter.done():
                                waiter.set_result(entry)
        finally:
            await self.close()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything appended so far has committed; False on timeout."""
        try:
            await asyncio.wait_for(asyncio.shield(self.barrier()), timeout_s)
            return True
        except TimeoutError:
            return False

    async def _connection(self) -> asyncpg.Connection:
        """The writer's own connection: never waits behind requests for a pooled one.

        Custom plans: the writer's statements join arrays against tables that grow from
        empty, and a generic plan made while they were small would scan them whole.
        """
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._database_url,
                timeout=CONNECT_TIMEOUT_S,
                server_settings={
                    "plan_cache_mode": "force_custom_plan",
                    "application_name": "probo-ledger-writer",
                },
            )
        return self._conn

    async def _commit_until_done(self, batch: list[Entry]) -> None:
        rows: BatchRows | None = None
        tries = 0
        while True:
            try:
                conn = await self._connection()
                if rows is None:
                    await self._fetch_missing_accounts(conn, batch)
                    rows = build_batch(
                        batch,
                        self._cash_accounts,
                        self._escrow_accounts,
                        self._positions,
                        self._not_new,
                    )
                    # Later batches build on this one: it will commit before them.
                    self._positions.update(rows.positions)
                    self._not_new.update(rows.not_new)
                started = time.perf_counter()
                if len(batch) >= self.copy_batch_min:
                    async with conn.transaction():
                        await _write_by_copy(conn, rows)
                else:
                    await _write_by_call(conn, rows)
                metrics.LEDGER_BATCH_SECONDS.observe(time.perf_counter() - started)
                metrics.LEDGER_BATCH_ENTRIES.observe(len(batch))
                if self.stalled_since is not None:
                    logger.info("ledger writer recovered after {} tries", tries)
                    self.stalled_since = None
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is retried: dropping a batch would lose money
                if self.stalled_since is None:
                    self.stalled_since = time.monotonic()
                metrics.LEDGER_COMMIT_FAILURES.inc()
                delay = RETRY_BACKOFF_S[min(tries, len(RETRY_BACKOFF_S) - 1)]
                tries += 1
                transient = isinstance(exc, UNAVAILABLE_ERRORS)
                if transient:
                    self._drop_connection()
                log = logger.warning if transient else logger.error
                log(
                    "ledger batch of {} entries failed ({!r}); retry {} in {} s",
                    len(batch),
                    exc,
                    tries,
                    delay,
                )
                await asyncio.sleep(delay)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _fetch_missing_accounts(self, conn: asyncpg.Connection, batch: list[Entry]) -> None:
        users: set[int] = set()
        markets: set[int] = set()
        for entry in batch:
            for event in entry.events:
                user_id = getattr(event, "user_id", None)
                if user_id is not None and user_id not in self._cash_accounts:
                    users.add(user_id)
                maker = getattr(event, "maker_user_id", None)
                if maker is not None:
                    if event.taker_user_id not in self._cash_accounts:  # type: ignore[union-attr]
                        users.add(event.taker_user_id)  # type: ignore[union-attr]
                    if maker not in self._cash_accounts:
                        users.add(maker)
                    if event.market_id not in self._escrow_accounts:  # type: ignore[union-attr]
                        markets.add(event.market_id)  # type: ignore[union-attr]
                elif type(event) is Settlement:
                    if event.market_id not in self._escrow_accounts:
                        markets.add(event.market_id)
                    users.update(
                        p.user_id for p in event.payouts if p.user_id not in self._cash_accounts
                    )
        if users:
            for row in await conn.fetch(
                "SELECT id, user_id FROM accounts WHERE user_id = ANY($1::bigint[])", list(users)
            ):
                self._cash_accounts[row["user_id"]] = row["id"]
        if markets:
            for row in await conn.fetch(
                "SELECT id, market_id FROM accounts WHERE market_id = ANY($1::bigint[])",
                list(markets),
            ):
                self._escrow_accounts[row["market_id"]] = row["id"]


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to one list per column (`width` columns, also when there are no rows)."""
    return (
        [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
    )


def _market_columns(rows: BatchRows) -> tuple[list[Any], ...]:
    ids = sorted(rows.markets)
    changes = [rows.markets[i] for i in ids]
    return (
        ids,
        [c.status for c in changes],
        [c.outcome for c in changes],
        [c.volume for c in changes],
        [c.last_price for c in changes],
    )


async def _write_by_call(conn: asyncpg.Connection, rows: BatchRows) -> None:
    """Small batches: one call of `probo_write_batch`, one round trip."""
    account_ids = sorted(rows.account_deltas)
    position_keys = list(rows.positions)
    positions = [
        (user_id, market_id, p.yes, p.no, p.yes_cost, p.no_cost, p.realized, p.payout)
        for (user_id, market_id), p in ((k, rows.positions[k]) for k in position_keys)
    ]
    await conn.execute(
        _WRITE_BATCH,
        [tuple(order) for order in rows.new_orders],
        *_columns(rows.order_updates, 6),
        rows.trades,
        *_columns(rows.transfers, 7),
        account_ids,
        [rows.account_deltas[i] for i in account_ids],
        positions,
        rows.withdrawals,
        *_market_columns(rows),
        sorted(rows.not_new),
    )


async def _write_by_copy(conn: asyncpg.Connection, rows: BatchRows) -> None:
    """Large batches: COPY and set-based statements, one transaction (the caller's)."""
    # Users before accounts: the same lock order as a referral, which locks both.
    if rows.not_new:
        await conn.execute(_NOT_NEW, sorted(rows.not_new))
    if rows.new_orders:
        await conn.copy_records_to_table("orders", records=rows.new_orders, columns=_ORDER_COLUMNS)
    if rows.order_updates:
        await conn.execute(_UPDATE_ORDERS, *zip(*rows.order_updates, strict=True))
    if rows.trades:
        await conn.copy_records_to_table("trades", records=rows.trades, columns=_TRADE_COLUMNS)
    if rows.transfers:
        await conn.copy_records_to_table(
            "transfers", records=rows.transfers, columns=_TRANSFER_COLUMNS
        )
    if rows.account_deltas:
        account_ids = sorted(rows.account_deltas)
        # In id order, like every other posting, so concurrent postings cannot deadlock.
        await conn.execute(_LOCK_ACCOUNTS, account_ids)
        await conn.execute(
            _APPLY_DELTAS, account_ids, [rows.account_deltas[i] for i in account_ids]
        )
    if rows.positions:
        keys = list(rows.positions)
        values = [rows.positions[k] for k in keys]
        await conn.execute(
            _UPSERT_POSITIONS,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [v.yes for v in values],
            [v.no for v in values],
            [v.yes_cost for v in values],
            [v.no_cost for v in values],
            [v.realized for v in values],
            [v.payout for v in values],
        )
    if rows.withdrawals:
        await conn.copy_records_to_table(
            "withdrawals", records=rows.withdrawals, columns=_WITHDRAWAL_COLUMNS
        )
    if rows.markets:
        await conn.execute(_UPDATE_MARKETS, *_market_columns(rows))
