"""The engine, the ledger writer and recovery against each other, on real Postgres.

A seeded stream of random commands (limit gtc/ioc/fok and market orders on both
outcomes and sides, cancels, cancel-alls, withdrawals; at the end a market paused,
one resolved and one closed while orders flow) runs through the real per-market
engine tasks and the group-commit writer. Every so often a second engine is recovered
from Postgres alone and must equal the running one exactly: cash, positions, escrows,
and every book's resting orders in the same priority order with the same remaining
quantities. The ledger invariants must hold throughout, and the live feeds' committed
books (probo/realtime, fed by the writer's commits) must equal the engine's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
import pytest_asyncio

from probo.ledger import (
    EngineState,
    EntryRefused,
    EntryUndone,
    LedgerWriter,
    engine_breaches,
    ledger_breaches,
)
from probo.ledger import batch as batch_module
from probo.ledger import store as store_module
from probo.ledger.writer import BATCH_ENTRIES_MAX
from probo.orderbook import (
    CancelAll,
    CancelOrder,
    CloseMarket,
    Engine,
    Entry,
    OrderAccepted,
    PauseMarket,
    PlaceOrder,
    ResolveMarket,
    Withdraw,
)
from probo.realtime import Hub
from tests.refusals import POISON_PREFIX, REFUSE_POISONED_ORDERS

USERS = 12
MARKETS = {1: 50, 2: 10, 3: 100}  # market id -> tick
FUNDS = 200_000
COMMANDS = 3000
CHECK_EVERY = 500
SEED = 20261125
COMMIT_TIMEOUT_S = 30  # a writer stuck retrying a batch it cannot write fails the test


@pytest.fixture
def url(scratch_database: str) -> str:
    return scratch_database


@pytest_asyncio.fixture
async def pool(url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


async def _seed(pool: asyncpg.Pool) -> None:
    """Funded users and open markets, written as the wallet and markets services do."""
    async with pool.acquire() as conn, conn.transaction():
        for user_id in range(1, USERS + 1):
            await conn.execute(
                "INSERT INTO users (id, phone, referral_code) VALUES ($1, $2, $3)",
                user_id,
                f"+91980000{user_id:04d}",
                f"USER{'ABCDEFGHJK'[user_id % 10]}{'MNPQRSTUVW'[user_id // 10]}AA",
            )
            account_id = await conn.fetchval(
                "INSERT INTO accounts (kind, user_id) VALUES ('user_cash', $1) RETURNING id",
                user_id,
            )
            await conn.execute(
                "INSERT INTO transfers (debit_account_id, credit_account_id, amount, kind, ref_type, ref_id) "
                "VALUES (2, $1, $2, 'deposit', 'deposit', $3)",
                account_id,
                FUNDS,
                user_id,
            )
            await conn.execute(
                "UPDATE accounts SET balance = balance + $2 WHERE id = $1", account_id, FUNDS
            )
            await conn.execute("UPDATE accounts SET balance = balance - $1 WHERE id = 2", FUNDS)
        for market_id, tick in MARKETS.items():
            await conn.execute(
                "INSERT INTO markets (id, title, closes_at, tick) VALUES ($1, $2, now() + interval '1 day', $3)",
                market_id,
                f"market {market_id}",
                tick,
            )
            await conn.execute(
                "INSERT INTO accounts (kind, market_id) VALUES ('market_escrow', $1)", market_id
            )


def _command(
    rng: random.Random, issued: list[tuple[int, int, int]]
) -> PlaceOrder | CancelOrder | CancelAll:
    user_id = rng.randint(1, USERS)
    market_id = rng.choice(list(MARKETS))
    tick = MARKETS[market_id]
    roll = rng.random()
    if roll < 0.12 and issued:
        order_user, order_market, order_id = rng.choice(issued)
        return CancelOrder(order_user, order_market, order_id)
    if roll < 0.14:
        return CancelAll(user_id, market_id)
    outcome = rng.choice(("yes", "no"))
    side = "sell" if rng.random() < 0.35 else "buy"
    quantity = rng.randint(1, 30)
    if roll < 0.2:
        return PlaceOrder(user_id, market_id, outcome, side, "market", quantity, None, "ioc")  # type: ignore[arg-type]
    # Prices around the middle, so about a third of orders cross.
    price = tick * rng.randint(max(1, 350 // tick), (650 // tick))
    time_in_force = rng.choices(("gtc", "ioc", "fok"), (8, 1, 1))[0]
    client_order_id = f"c{rng.randint(0, 2000)}" if rng.random() < 0.1 else None
    return PlaceOrder(
        user_id, market_id, outcome, side, "limit", quantity, price, time_in_force, client_order_id
    )  # type: ignore[arg-type]


def _books(engine: Engine) -> dict[int, list[tuple[int, int, int]]]:
    exchange = engine.exchange
    return {
        m: [(o.order_id, o.user_id, o.remaining) for o in exchange.open_orders(m)]
        for m in exchange.markets
    }


async def _recovered_equals_running(
    pool: asyncpg.Pool, engine: Engine, writer: LedgerWriter, hub: Hub
) -> None:
    cash, positions, escrow, open_orders = engine.state()
    assert await writer.drain(10.0)
    for market_id in engine.exchange.markets:
        book = hub.order_book(market_id)
        assert book is not None
        depth = engine.exchange.depth(market_id)
        assert [(lv.price, lv.quantity) for lv in book.yes] == depth["yes"], market_id
        assert [(lv.price, lv.quantity) for lv in book.no] == depth["no"], market_id
    async with pool.acquire() as conn:
        assert await ledger_breaches(conn) == []
        state = EngineState(cash=cash, positions=positions, escrow=escrow, open_orders=open_orders)
        assert await engine_breaches(conn, state) == []
    recovered = Engine()
    await recovered.recover(pool)
    recovered.exchange.validate()
    assert recovered.state() == (cash, positions, escrow, open_orders)
    assert _books(recovered) == _books(engine)  # same priority, level by level
    assert recovered.exchange.last_order_id == engine.exchange.last_order_id
    assert recovered.exchange.last_trade_id == engine.exchange.last_trade_id
    assert recovered.last_withdrawal_id == engine.last_withdrawal_id
    assert _statuses(recovered) == _statuses(engine)


async def _recovered(
    url: str, pool: asyncpg.Pool, **writer_options: int
) -> tuple[Engine, LedgerWriter]:
    """An engine recovered from Postgres and a writer loaded from it, the writer able to
    pause and rebuild the engine."""
    engine = Engine()
    writer = LedgerWriter(url, backlog_max=100_000, **writer_options)
    await engine.recover(pool)
    async with pool.acquire() as conn:
        await writer.load(conn)
    writer.engine = engine
    return engine, writer


@asynccontextmanager
async def _running(pool: asyncpg.Pool, engine: Engine, writer: LedgerWriter) -> AsyncIterator[Hub]:
    """The recovered `engine` and a loaded `writer` running, the feeds' hub on its commits."""
    engine.attach(writer)
    hub = Hub(engine, pool)
    hub.load()
    writer.on_commit = hub.committed
    writer_task = asyncio.create_task(writer.run())
    engine.start()
    try:
        yield hub
    finally:
        await engine.stop()
        writer_task.cancel()
        await asyncio.gather(writer_task, return_exceptions=True)


# Both ways of writing a batch, and a backlog cut into batches translated ahead.
EVERY_WAY_OF_WRITING = pytest.mark.parametrize(
    ("copy_batch_min", "batch_entries_max"),
    [(1, BATCH_ENTRIES_MAX), (10**9, BATCH_ENTRIES_MAX), (1, 16)],
    ids=["by-copy", "by-call", "by-copy-translated-ahead"],
)


def _statuses(engine: Engine) -> dict[int, str]:
    return {m: market.status for m, market in engine.exchange.markets.items()}


@EVERY_WAY_OF_WRITING
async def test_random_trading_is_written_exactly_and_recovers_exactly(
    url: str,
    pool: asyncpg.Pool,
    copy_batch_min: int,
    batch_entries_max: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both ways of writing a batch (COPY for large ones, one call for small ones), and
    a backlog cut into many batches, each translated while the one before commits: in
    small steps, with account ids looked up as users first trade, so the translation
    ahead interleaves with the writer's round trips."""
    translated_ahead = batch_entries_max < BATCH_ENTRIES_MAX
    writer = LedgerWriter(
        url,
        backlog_max=100_000,
        copy_batch_min=copy_batch_min,
        batch_entries_max=batch_entries_max,
    )
    if translated_ahead:
        monkeypatch.setattr(batch_module, "STEP_ENTRIES", 2)
        async with pool.acquire() as conn:
            await writer.load(conn)  # before any user or market exists
    await _seed(pool)
    engine = Engine()
    await engine.recover(pool)
    if not translated_ahead:
        async with pool.acquire() as conn:
            await writer.load(conn)
    rng = random.Random(SEED)
    issued: list[tuple[int, int, int]] = []
    trades = 0
    async with _running(pool, engine, writer) as hub:
        for start in range(0, COMMANDS, CHECK_EVERY):
            # A burst in flight at once: the writer batches them.
            waiters = [engine.submit(_command(rng, issued)) for _ in range(CHECK_EVERY)]
            for _ in range(20):
                withdrawal = Withdraw(
                    rng.randint(1, USERS), rng.randint(100, 5000), f"w{start}-{rng.random()}"
                )
                waiters.append(engine.submit(withdrawal))
            for entry in await asyncio.wait_for(asyncio.gather(*waiters), COMMIT_TIMEOUT_S):
                for event in entry.events:
                    if type(event) is OrderAccepted:
                        issued.append((event.user_id, event.market_id, event.order_id))
                trades += sum(1 for e in entry.events if type(e).__name__ == "TradeExecuted")
            engine.exchange.validate()
            await _recovered_equals_running(pool, engine, writer, hub)
        # The lifecycle in one burst with orders: market 3 resolves (closing first,
        # with a fee), market 2 pauses and later closes, market 1 keeps trading.
        lifecycle = {100: ResolveMarket(3, "void", 150), 200: PauseMarket(2), 300: CloseMarket(2)}
        waiters = [
            engine.submit(lifecycle.get(i) or _command(rng, issued)) for i in range(CHECK_EVERY)
        ]
        entries = await asyncio.wait_for(asyncio.gather(*waiters), COMMIT_TIMEOUT_S)
        trades += sum(1 for e in entries for ev in e.events if type(ev).__name__ == "TradeExecuted")
        assert _statuses(engine) == {1: "open", 2: "closed", 3: "resolved"}
        engine.exchange.validate()
        await _recovered_equals_running(pool, engine, writer, hub)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT balance FROM accounts WHERE market_id = 3") == 0
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM orders WHERE status = 'open' AND market_id <> 1"
                )
                == 0
            )
            paid = await conn.fetchval("SELECT count(*) FROM transfers WHERE kind = 'payout'")
        assert paid > 0
    assert trades > COMMANDS // 10, f"only {trades} trades: the stream does not exercise matching"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM trades") == trades
        kinds = {r[0] for r in await conn.fetch("SELECT DISTINCT kind FROM trades")}
    assert kinds == {"mint", "transfer", "merge"}


async def test_a_batch_whose_commit_answer_is_lost_is_neither_written_twice_nor_stuck(
    url: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops after Postgres committed a batch, before the writer heard:
    the retry finds the batch in `ledger_head` and moves on."""
    await _seed(pool)
    engine, writer = await _recovered(url, pool)
    lost: list[int] = []
    write_by_call = store_module.write_batch_by_call

    async def committed_then_cut(conn: asyncpg.Connection, rows: object) -> None:
        await write_by_call(conn, rows)  # type: ignore[arg-type]
        if not lost:
            lost.append(rows.batch_id)  # type: ignore[attr-defined]
            conn.terminate()
            raise ConnectionResetError("the answer to the commit was lost")

    monkeypatch.setattr(store_module, "write_batch_by_call", committed_then_cut)
    rng = random.Random(SEED)
    issued: list[tuple[int, int, int]] = []
    async with _running(pool, engine, writer) as hub:
        for _ in range(3):
            waiters = [engine.submit(_command(rng, issued)) for _ in range(50)]
            for entry in await asyncio.wait_for(asyncio.gather(*waiters), COMMIT_TIMEOUT_S):
                for event in entry.events:
                    if type(event) is OrderAccepted:
                        issued.append((event.user_id, event.market_id, event.order_id))
        assert lost, "no batch went through the lost answer"
        assert writer.stalled_since is None
        await _recovered_equals_running(pool, engine, writer, hub)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM orders") == len(issued)
            assert await conn.fetchval("SELECT last_batch_id FROM ledger_head") > lost[0]


POISON_EVERY = 97  # one command in this many is refused by Postgres
POISONED_MARKET = 1
POISONED_USERS = range(1, 5)  # the only users trading on the poisoned market


def _partitioned(rng: random.Random, issued: list[tuple[int, int, int]]) -> object:
    """A random command in which the poisoned market has users of its own."""
    command = _command(rng, issued)
    if type(command) is CancelOrder:
        return command  # of an issued order: its user already fits
    if command.market_id == POISONED_MARKET:
        user_id = rng.choice(POISONED_USERS)
    else:
        user_id = rng.randint(POISONED_USERS[-1] + 1, USERS)
    return msgspec.structs.replace(command, user_id=user_id)


@EVERY_WAY_OF_WRITING
async def test_an_entry_postgres_refuses_is_cut_out_and_other_markets_trade_on(
    url: str,
    pool: asyncpg.Pool,
    copy_batch_min: int,
    batch_entries_max: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Orders Postgres refuses, in bursts of random trading on three markets: each is
    answered EntryRefused, what was decided after it on its market is undone
    (EntryUndone), and the other markets, whose users never touch it, commit
    everything. The engine is rebuilt from Postgres and equals it; the last burst, with
    no poison, trades on every market; the ledger holds throughout."""
    if batch_entries_max < BATCH_ENTRIES_MAX:
        monkeypatch.setattr(batch_module, "STEP_ENTRIES", 2)
    await _seed(pool)
    async with pool.acquire() as conn:
        await conn.execute(REFUSE_POISONED_ORDERS)
    engine, writer = await _recovered(
        url, pool, copy_batch_min=copy_batch_min, batch_entries_max=batch_entries_max
    )
    rng = random.Random(SEED)
    issued: list[tuple[int, int, int]] = []
    refused = 0
    async with _running(pool, engine, writer) as hub:
        for burst in range(4):
            commands = [_partitioned(rng, issued) for _ in range(CHECK_EVERY)]
            if burst < 3:  # the last burst is clean: trading goes on as before
                for i in range(POISON_EVERY // 2, len(commands), POISON_EVERY):
                    commands[i] = PlaceOrder(rng.choice(POISONED_USERS), POISONED_MARKET, "yes", "buy",
                                             "limit", 5, 500, "gtc", f"{POISON_PREFIX}-{burst}-{i}")  # fmt: skip
            waiters = [engine.submit(command) for command in commands]  # type: ignore[arg-type]
            results = await asyncio.wait_for(
                asyncio.gather(*waiters, return_exceptions=True), COMMIT_TIMEOUT_S
            )
            async with pool.acquire() as conn:
                stored = {r[0] for r in await conn.fetch("SELECT id FROM orders")}
            committed = {m: 0 for m in MARKETS}
            for command, result in zip(commands, results, strict=True):
                poison = (getattr(command, "client_order_id", None) or "").startswith(POISON_PREFIX)
                market_id = command.market_id  # type: ignore[attr-defined]
                if isinstance(result, EntryRefused):
                    assert poison, command
                    refused += 1
                    continue
                if isinstance(result, EntryUndone):
                    assert market_id == POISONED_MARKET, command
                    continue
                assert not isinstance(result, BaseException), result
                assert not poison, command
                committed[market_id] += 1
                for event in result.events:
                    if type(event) is OrderAccepted:  # acknowledged, so it is stored
                        assert event.order_id in stored
                        issued.append((event.user_id, event.market_id, event.order_id))
            assert all(committed.values()), committed
            # Every answer is out; the rebuild follows once the writer has nothing left.
            for _ in range(1000):
                if not engine.paused:
                    break
                await asyncio.sleep(0.01)
            assert not engine.paused, "the engine was not rebuilt"
            await _recovered_equals_running(pool, engine, writer, hub)
    assert refused >= 3
    async with pool.acquire() as conn:
        poisoned = "SELECT count(*) FROM orders WHERE starts_with(client_order_id, $1)"
        assert await conn.fetchval(poisoned, POISON_PREFIX) == 0


# Refused once only (a sequence is not rolled back with the refusal).
_FLAKY = """
CREATE SEQUENCE flaky_refusals;
CREATE FUNCTION refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.client_order_id = 'flaky' THEN
        IF nextval('flaky_refusals') = 1 THEN
            RAISE EXCEPTION 'refused once' USING ERRCODE = '23514';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_once BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_once();
"""


async def test_a_refusal_that_does_not_recur_loses_nothing(url: str, pool: asyncpg.Pool) -> None:
    """A batch refused once and then written in parts: every command commits, nothing
    is undone, the engine resumes without a rebuild."""
    await _seed(pool)
    async with pool.acquire() as conn:
        await conn.execute(_FLAKY)
    engine, writer = await _recovered(url, pool)
    rng = random.Random(SEED)
    commands = [_command(rng, []) for _ in range(200)]
    commands[100] = PlaceOrder(1, 1, "yes", "buy", "limit", 1, 100, "gtc", "flaky")
    async with _running(pool, engine, writer) as hub:
        entries = await asyncio.wait_for(
            asyncio.gather(*(engine.submit(c) for c in commands)), COMMIT_TIMEOUT_S
        )
        assert not engine.paused
        await _recovered_equals_running(pool, engine, writer, hub)
    accepted = sum(1 for e in entries if e.events and type(e.events[0]) is OrderAccepted)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders") == accepted
        assert await conn.fetchval("SELECT last_value FROM flaky_refusals") == 2  # refused once


class _UnknownEvent(msgspec.Struct, frozen=True):
    """An engine event the ledger was not told of."""

    market_id: int
    user_id: int


async def test_an_event_the_ledger_does_not_know_is_refused_never_skipped(
    url: str, pool: asyncpg.Pool
) -> None:
    """The translation fails on an event type it does not know: that entry is answered
    EntryRefused and nothing of it is written, what committed before it stays, what was
    decided after it is committed or undone (nobody can tell whom an unknown event
    touched), and the engine, rebuilt, trades on."""
    await _seed(pool)
    engine, writer = await _recovered(url, pool)
    async with _running(pool, engine, writer) as hub:
        await engine.submit(PlaceOrder(5, 2, "yes", "buy", "limit", 3, 400))
        unknown: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        writer.append(Entry([_UnknownEvent(market_id=1, user_id=1)], datetime.now(UTC), unknown))
        after = engine.submit(PlaceOrder(6, 3, "no", "buy", "limit", 3, 400))
        with pytest.raises(EntryRefused):
            await asyncio.wait_for(unknown, COMMIT_TIMEOUT_S)
        try:
            await asyncio.wait_for(after, COMMIT_TIMEOUT_S)
            placed = 3
        except EntryUndone:
            placed = 2
        for _ in range(1000):
            if not engine.paused:
                break
            await asyncio.sleep(0.01)
        assert not engine.paused, "the engine was not rebuilt"
        await engine.submit(PlaceOrder(1, 1, "yes", "buy", "limit", 3, 400))
        await _recovered_equals_running(pool, engine, writer, hub)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders") == placed
