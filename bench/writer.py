"""The ledger writer alone: trades committed per second, target >= 50,000/s.

Before any timing, a real order flow runs through the in-memory `Exchange`: one
bench/flow.py flow per market (~30% of places crossing, transfers, mints and merges,
5% cancels), the markets interleaved command by command, 1,000 users shared by all of
them; each command's events become one `Entry`, exactly as the engine hands them over.
A fresh database holds those users, each funded from the platform bank, and the
markets with their escrow accounts.

Timed: every entry appended to a `LedgerWriter` at once, then `drain`. Appending up
front keeps the writer saturated (batches of `BATCH_ENTRIES_MAX`), as behind an engine
far faster than it; the engine's backlog bound is not applied. Reported: trades/s and
entries/s committed, batches, mean batch size, p50/p99 commit time per batch (the
writer's `_commit`: translation, COPYs and updates, commit). The translation alone
(`build_batch` over the same batches) is timed afterwards, and every statement the
writer's connection runs is timed as it goes: where the time goes, Python or Postgres.

Then the floor: this run's rows of trades, transfers and orders (the rows each trade
adds) COPYed by Postgres alone into empty copies of those tables, once with the
schema's indexes and once with primary keys only. No writer on this server can beat
the first figure; the gap between the two is what the read paths' indexes cost.

Checked after the run: one trades row per TradeExecuted, the ledger audit clean, and
Postgres equal to the engine: cash per user, escrow per market, positions, open orders.

    python -m bench.writer                   # about 200,000 trades over 4 markets
    python -m bench.writer -n 50000 --markets 1
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import platform
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import uvloop

from bench import flow
from bench._servers import drop_database, fresh_database, postgres_admin_url
from probo.infra import configure_logging
from probo.ledger import PLATFORM_BANK_ACCOUNT_ID, LedgerWriter, ledger_breaches
from probo.ledger.batch import BatchRows, PositionCost, build_batch
from probo.orderbook import (
    CancelOrder,
    Entry,
    Event,
    Exchange,
    OrderAccepted,
    OrderRejected,
    PlaceOrder,
    TradeExecuted,
)

TARGET_TRADES_PER_S = 50_000
DEFAULT_TRADES = 200_000
DEFAULT_MARKETS = 4
USERS = 1000  # bench/flow.py's default population, shared by every market
SEED = 20240601  # market m's flow uses SEED + m
TRADES_PER_COMMAND = 0.8  # what a bench/flow.py flow yields, to size each market's flow
FLOW_MARGIN = 1.25  # flows this much longer than needed; the stream stops at the target
DRAIN_POLL_S = 1.0
STALL_ABORT_S = 10.0  # a batch failing this long will not commit (the writer retries forever)
POOL_SIZE = 2  # the writer holds one connection
STATEMENT_WORDS = 3  # a statement is named by its first words ("UPDATE orders AS")
NAME_WIDTH = 32
MARKET_CLOSES_IN = "30 days"
SHOWN_MAX = 5  # differences named per check


# --- the database ------------------------------------------------------------------------


async def insert_funded_users(conn: asyncpg.Connection, users: int, funding: str) -> None:
    """Users 1..`users`, each with a user_cash account funded from the platform bank by a
    deposit transfer of `funding` (a SQL expression, of `g.user_id` if it likes)."""
    await conn.execute(
        "INSERT INTO users (id, phone, referral_code) "
        "SELECT i, '+9190' || lpad(i::text, 8, '0'), "
        "       translate(lpad(i::text, 8, '0'), '0123456789', 'ABCDEFGHJK') "
        "FROM generate_series(1, $1) i",
        users,
    )
    await conn.execute(
        f"INSERT INTO accounts (kind, user_id, balance) SELECT 'user_cash', g.user_id, {funding} "
        "FROM generate_series(1, $1) AS g(user_id)",
        users,
    )
    await conn.execute(
        "INSERT INTO transfers (debit_account_id, credit_account_id, amount, kind, ref_type, ref_id) "
        "SELECT $1, id, balance, 'deposit', 'deposit', user_id FROM accounts WHERE kind = 'user_cash'",
        PLATFORM_BANK_ACCOUNT_ID,
    )
    await conn.execute(
        "UPDATE accounts SET balance = balance - "
        "(SELECT sum(balance) FROM accounts WHERE kind = 'user_cash') WHERE id = $1",
        PLATFORM_BANK_ACCOUNT_ID,
    )


async def insert_markets(conn: asyncpg.Connection, markets: int, tick: int) -> None:
    """Open markets 1..`markets`, each with an empty escrow account."""
    await conn.execute(
        "INSERT INTO markets (id, title, tick, closes_at) "
        f"SELECT i, 'bench market ' || i, $2, now() + interval '{MARKET_CLOSES_IN}' "
        "FROM generate_series(1, $1) i",
        markets,
        tick,
    )
    await conn.execute(
        "INSERT INTO accounts (kind, market_id) SELECT 'market_escrow', id FROM markets"
    )


# --- the stream ----------------------------------------------------------------------------


class Stream(msgspec.Struct):
    exchange: Exchange
    entries: list[Entry]
    trades: int
    trade_kinds: dict[str, int]
    orders: int
    rejected: int
    funding: int
    seconds: float


def generate(trades_wanted: int, markets: int) -> Stream:
    """Each market's flow through one `Exchange`, interleaved, until `trades_wanted`
    trades (the warm-up mints of every market come first and count)."""
    started = time.perf_counter()
    per_market = math.ceil(trades_wanted / markets / TRADES_PER_COMMAND * FLOW_MARGIN)
    flows = [flow.generate(per_market, users=USERS, seed=SEED + m) for m in range(markets)]
    funding = flows[0].funding
    exchange = Exchange()
    for market_id in range(1, markets + 1):
        exchange.open_market(market_id, tick=flow.TICK)
    for user_id in range(1, USERS + 1):
        exchange.credit(user_id, funding)
    # A flow names its orders 1, 2, ... in its own order of places: per market, the
    # exchange's id of each, so that a cancel names the right order.
    order_ids: list[list[int]] = [[] for _ in range(markets)]
    stream = Stream(exchange, [], 0, {}, 0, 0, funding, 0.0)

    def run(index: int, command: PlaceOrder | CancelOrder) -> None:
        market_id = index + 1
        if type(command) is CancelOrder:
            command = CancelOrder(
                command.user_id, market_id, order_ids[index][command.order_id - 1]
            )
            events: list[Event] = exchange.cancel(command)
        else:
            events = exchange.place(msgspec.structs.replace(command, market_id=market_id))
            first = events[0]
            if type(first) is OrderAccepted:
                order_ids[index].append(first.order_id)
                stream.orders += 1
            elif type(first) is OrderRejected:
                stream.rejected += 1
        for event in events:
            if type(event) is TradeExecuted:
                stream.trades += 1
                stream.trade_kinds[event.kind] = stream.trade_kinds.get(event.kind, 0) + 1
        stream.entries.append(Entry(events, datetime.now(UTC), None))

    for index, market_flow in enumerate(flows):
        for command in market_flow.warmup:
            run(index, command)
    for step in range(per_market):
        if stream.trades >= trades_wanted:
            break
        for index, market_flow in enumerate(flows):
            run(index, market_flow.commands[step])
    stream.seconds = time.perf_counter() - started
    return stream


# --- the writer ----------------------------------------------------------------------------


class TimedConnection(asyncpg.Connection):
    """A connection adding each statement's seconds and rows to `spent` (by name)."""

    spent: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # [seconds, rows]

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> str:
        started = time.perf_counter()
        status = await super().execute(query, *args, **kwargs)
        name = " ".join(query.split(";")[0].split()[:STATEMENT_WORDS])
        rows = len(args[0]) if args and isinstance(args[0], list | tuple) else 0
        self._add(name, time.perf_counter() - started, rows)
        return status

    async def copy_records_to_table(self, table_name: str, **kwargs: Any) -> str:
        started = time.perf_counter()
        status = await super().copy_records_to_table(table_name, **kwargs)
        self._add(f"COPY {table_name}", time.perf_counter() - started, len(kwargs["records"]))
        return status

    def _add(self, name: str, seconds: float, rows: int) -> None:
        spent = self.spent[name]
        spent[0] += seconds
        spent[1] += rows


class TimedWriter(LedgerWriter):
    """The writer on a statement-timing connection, recording each batch's size and time
    (translation, statements, commit). Hooks private methods: a bench, not an API."""

    def __init__(self, url: str, *, backlog_max: int) -> None:
        super().__init__(url, backlog_max=backlog_max)
        self._url = url
        self.batches: list[tuple[int, float]] = []  # (entries, seconds)

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._url,
                connection_class=TimedConnection,
                server_settings={"plan_cache_mode": "force_custom_plan"},
            )
        return self._conn

    async def _commit_until_done(self, batch: list[Entry], rows: BatchRows) -> None:
        started = time.perf_counter()
        await super()._commit_until_done(batch, rows)
        self.batches.append((len(batch), time.perf_counter() - started))


async def write(
    pool: asyncpg.Pool, url: str, entries: Sequence[Entry]
) -> tuple[float, TimedWriter]:
    """Seconds from the first append until everything has committed, and the writer."""
    # The bound is the engine's to enforce; here everything is appended at once.
    writer = TimedWriter(url, backlog_max=len(entries))
    async with pool.acquire() as conn:
        await writer.load(conn)
    task = asyncio.create_task(writer.run(), name="ledger-writer")
    try:
        started = time.perf_counter()
        for entry in entries:
            writer.append(entry)
        while not await writer.drain(DRAIN_POLL_S):
            stalled = writer.stalled_since
            if stalled is not None and time.monotonic() - stalled > STALL_ABORT_S:
                raise RuntimeError(f"a batch has failed for {STALL_ABORT_S} s (see the log)")
        return time.perf_counter() - started, writer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def translation_seconds(
    conn: asyncpg.Connection, entries: Sequence[Entry], batch_sizes: Sequence[int]
) -> float:
    """`build_batch` alone over the same batches, caches carried as the writer does."""
    cash: dict[int, int] = {}
    escrow: dict[int, int] = {}
    for row in await conn.fetch("SELECT id, user_id, market_id FROM accounts"):
        if row["user_id"] is not None:
            cash[row["user_id"]] = row["id"]
        elif row["market_id"] is not None:
            escrow[row["market_id"]] = row["id"]
    positions: dict[tuple[int, int], PositionCost] = {}
    not_new: set[int] = set()
    started = time.perf_counter()
    offset = 0
    for size in batch_sizes:
        rows = build_batch(entries[offset : offset + size], cash, escrow, positions, not_new)
        positions.update(rows.positions)
        not_new.update(rows.not_new)
        offset += size
    return time.perf_counter() - started


# --- the floor -----------------------------------------------------------------------------

FLOOR_TABLES = ("trades", "transfers", "orders")  # the rows every trade adds
FLOOR_VARIANTS = (("the schema's indexes", True), ("primary keys only", False))


async def copy_floor(conn: asyncpg.Connection, *, indexes: bool) -> dict[str, float]:
    """Seconds Postgres alone takes to COPY this run's rows of `FLOOR_TABLES` into empty
    copies of those tables (with the schema's indexes, or with primary keys only), one
    transaction per table: what no writer on this server can beat for these rows."""
    seconds: dict[str, float] = {}
    for table in FLOOR_TABLES:
        rows = io.BytesIO()
        await conn.copy_from_table(table, output=rows, format="binary")
        rows.seek(0)
        copy = f"floor_{table}"
        if indexes:
            await conn.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")
        else:
            await conn.execute(
                f"CREATE TABLE {copy} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS, "
                "PRIMARY KEY (id))"
            )
        reloptions = await conn.fetchval(
            "SELECT reloptions FROM pg_class WHERE oid = $1::regclass", table
        )
        if reloptions:
            await conn.execute(f"ALTER TABLE {copy} SET ({', '.join(reloptions)})")
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_to_table(copy, source=rows, format="binary")
        seconds[table] = time.perf_counter() - started
        await conn.execute(f"DROP TABLE {copy}")
    return seconds


# --- the checks ----------------------------------------------------------------------------


def _differences(what: str, postgres: Mapping[Any, Any], engine: Mapping[Any, Any]) -> list[str]:
    differing = sorted(
        k for k in postgres.keys() | engine.keys() if postgres.get(k) != engine.get(k)
    )
    if not differing:
        return []
    shown = "; ".join(f"{k}: {postgres.get(k)} vs {engine.get(k)}" for k in differing[:SHOWN_MAX])
    return [f"{len(differing)} {what} differ (Postgres vs engine), e.g. {shown}"]


async def mismatches(conn: asyncpg.Connection, stream: Stream) -> list[str]:
    """What differs between Postgres and the stream's exchange (empty when all agree)."""
    problems: list[str] = []
    exchange = stream.exchange
    trades = await conn.fetchval("SELECT count(*) FROM trades")
    if trades != stream.trades:
        problems.append(f"{trades} trades rows for {stream.trades} TradeExecuted events")
    orders = await conn.fetchval("SELECT count(*) FROM orders")
    if orders != stream.orders:
        problems.append(f"{orders} orders rows for {stream.orders} OrderAccepted events")
    problems += [f"{b.invariant}: {b.message}" for b in await ledger_breaches(conn)]
    cash = dict(await conn.fetch("SELECT user_id, balance FROM accounts WHERE kind = 'user_cash'"))
    problems += _differences("user cash balances", cash, exchange.cash_by_user())
    escrow = dict(
        await conn.fetch("SELECT market_id, balance FROM accounts WHERE kind = 'market_escrow'")
    )
    problems += _differences(
        "market escrows", escrow, {m: exchange.escrow(m) for m in exchange.markets}
    )
    positions = {
        (r[0], r[1]): (r[2], r[3])
        for r in await conn.fetch(
            "SELECT user_id, market_id, yes_quantity, no_quantity FROM positions "
            "WHERE yes_quantity > 0 OR no_quantity > 0"
        )
    }
    problems += _differences("positions", positions, exchange.positions_by_market())
    open_orders = dict(
        await conn.fetch("SELECT id, quantity - filled_quantity FROM orders WHERE status = 'open'")
    )
    resting = {
        order.order_id: order.remaining
        for market_id in exchange.markets
        for order in exchange.open_orders(market_id)
    }
    problems += _differences("open orders (remaining)", open_orders, resting)
    return problems


# --- the report ----------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main(trades_wanted: int, markets: int) -> int:
    configure_logging("WARNING")
    stream = generate(trades_wanted, markets)
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(stream.trade_kinds.items()))
    print(
        f"ledger writer alone: {stream.trades:,} trades ({kinds}) in {len(stream.entries):,} "
        f"entries, {markets} markets, {USERS:,} users; python {platform.python_version()}"
    )
    print(
        f"  stream generated in {stream.seconds:.1f} s (not timed): {stream.orders:,} orders "
        f"accepted, {stream.rejected} rejected"
    )
    with postgres_admin_url() as admin_url:
        name, url = await fresh_database(admin_url)
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=POOL_SIZE, connection_class=TimedConnection
        )
        try:
            async with pool.acquire() as conn:
                await insert_funded_users(conn, USERS, str(stream.funding))
                await insert_markets(conn, markets, flow.TICK)
                await conn.execute("ANALYZE")
                server = await conn.fetchval("SHOW server_version")
            TimedConnection.spent.clear()
            seconds, writer = await write(pool, url, stream.entries)
            spent = dict(TimedConnection.spent)
            async with pool.acquire() as conn:
                translation = await translation_seconds(
                    conn, stream.entries, [size for size, _ in writer.batches]
                )
                problems = await mismatches(conn, stream)
                floors = {
                    label: await copy_floor(conn, indexes=indexes)
                    for label, indexes in FLOOR_VARIANTS
                }
        finally:
            await pool.close()
            await drop_database(admin_url, name)

    sizes = [size for size, _ in writer.batches]
    commits = [s for _, s in writer.batches]
    trades_per_s = stream.trades / seconds
    print(f"  postgres {server}, 1 writer connection, all entries appended up front")
    print(
        f"  {'trades/s':>10} {'entries/s':>10} {'seconds':>8} {'batches':>8} "
        f"{'mean batch':>11} {'p50 commit':>11} {'p99 commit':>11}"
    )
    print(
        f"  {trades_per_s:>10,.0f} {len(stream.entries) / seconds:>10,.0f} {seconds:>8.2f} "
        f"{len(sizes):>8} {sum(sizes) / len(sizes):>11,.0f} "
        f"{percentile(commits, 0.50) * 1000:>9.1f}ms {percentile(commits, 0.99) * 1000:>9.1f}ms"
    )
    print(f"  where the {seconds:.2f} s went:")
    for name, (statement_s, rows) in sorted(spent.items(), key=lambda kv: -kv[1][0]):
        per_row = f"{statement_s / rows * 1e6:6.1f} us/row" if rows else ""
        print(
            f"    {name:<{NAME_WIDTH}} {statement_s:6.2f} s {statement_s / seconds:4.0%} "
            f"{rows:>9,} rows {per_row}"
        )
    rest = seconds - translation - sum(statement_s for statement_s, _ in spent.values())
    print(
        f"    {'build_batch (replayed)':<{NAME_WIDTH}} {translation:6.2f} s {translation / seconds:4.0%}"
    )
    print(f"    {'the rest (Python, loop)':<{NAME_WIDTH}} {rest:6.2f} s {rest / seconds:4.0%}")
    print("  Postgres alone, COPY of this run's rows into empty copies of the tables:")
    for label, floor in floors.items():
        floor_s = sum(floor.values())
        parts = ", ".join(f"{table} {s:.2f} s" for table, s in floor.items())
        print(
            f"    {label + ':':<{NAME_WIDTH}} {stream.trades / floor_s:>8,.0f} trades/s ({parts})"
        )
    verdict = "met" if trades_per_s >= TARGET_TRADES_PER_S else "MISSED"
    print(f"  target >= {TARGET_TRADES_PER_S:,} trades/s: {verdict}")
    if problems:
        print("  CHECKS FAILED:")
        for problem in problems:
            print(f"    {problem}")
        return 1
    print(
        "  checks: trades and orders rows match the events, ledger audit clean, "
        "Postgres equals the engine (cash, escrow, positions, open orders)"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=DEFAULT_TRADES, help="trades to write")
    parser.add_argument("--markets", type=int, default=DEFAULT_MARKETS)
    args = parser.parse_args()
    raise SystemExit(uvloop.run(main(args.n, args.markets)))
