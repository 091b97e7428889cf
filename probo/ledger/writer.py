"""The ordered group-commit ledger writer: the engine's events into Postgres.

Every market's engine task and the wallet append `Entry`s (one command's events) to
one queue, in the order the engine decided them. One consumer takes whatever has
queued, up to `batch_entries_max`, and commits it in one transaction: a small batch
with one call of the database function `probo_write_batch` (one round trip, set-based
statements), a large one (a backlog: after an outage, a burst) by COPY and set-based
statements, more round trips but cheaper rows; the two are checked against each other.
Orders, trades, transfers, account balances, positions, withdrawals, markets (status,
outcome, volume, last price). Only then does each entry's waiter get its result, so
nothing is acknowledged before it is durable. While one batch commits the next one
gathers: that is the group commit, and it needs no timer. Under a backlog the next
batch is also translated while the previous one commits, in steps that leave the
event loop to the commit's round trips.

If Postgres is away the batch is retried, with backoff, until it commits; the engine
meanwhile goes on (bounded by `backlog_max`, which the order path refuses beyond).
The translation of events into rows is pure (`batch.py`) and done once per batch; a
failed batch is retried with exactly the same rows until it commits. The writer has
its own connection, so it never waits behind requests for a pooled one.

A batch Postgres refuses for what it holds (a data error: retrying cannot help) is
split until the one entry it refuses on its own is found; the entries before it
commit, that one is answered `EntryRefused` and logged at critical. What the engine
decided after it may build on it, so the writer quarantines: the engine pauses, and
every later entry that touches a market or user the refused one touched (and so on,
transitively) is answered `EntryUndone`, while the others commit as usual. Once
everything decided before the pause is written or undone, the engine is rebuilt from
Postgres and resumes. Nothing undone was ever acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol, TypeVar

import asyncpg
from loguru import logger

from probo.infra import CONFLICT_ERRORS, CONNECT_TIMEOUT_S, UNAVAILABLE_ERRORS, metrics
from probo.ledger import store
from probo.ledger.batch import (
    BatchRows,
    PositionCost,
    accounts_named,
    build_batch,
    build_batch_in_steps,
)
from probo.ledger.types import (
    REPEATED_KEY_CONSTRAINTS,
    EntryRefused,
    EntryRepeatsKey,
    EntryUndone,
)
from probo.orderbook import Entry, parties

BATCH_ENTRIES_MAX = 16384  # commands per transaction
# A batch of this many commands or more is written by COPY (throughput: a backlog
# after an outage, bursts); smaller ones by one call (latency: one round trip).
COPY_BATCH_MIN = 512
RETRY_BACKOFF_S = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
REFUSED_ENTRY_LOGGED_CHARS_MAX = 4000  # a settlement lists every holder
_T = TypeVar("_T")
# Postgres error classes that pass with time: insufficient resources (disk full, out of
# memory), objects in use or locked, operator intervention, system (I/O) errors. Any
# other refusal of a batch is about what it holds, and is split instead of retried.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"53", "55", "57", "58"})


class EngineControl(Protocol):
    """What the writer needs of the engine to undo decisions the ledger refused."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    async def rebuild(self) -> object: ...


class _Refused(Exception):
    """A batch refused for what it holds (translating it, or by Postgres): `cause`."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(repr(cause))
        self.cause = cause


class _Quarantine:
    """The markets and users whose engine state is ahead of the ledger in a way no
    later commit will fix.

    An entry builds on that state when it is about a quarantined market (its book,
    status, escrow and positions) or its command is a quarantined user's (their cash
    and locks decided it). A maker's cash is not read to trade with their resting
    order, so a maker alone does not taint an entry. An undone entry's markets and
    users all join the quarantine: what it did to them is undone too."""

    def __init__(self) -> None:
        self.markets: set[int] = set()
        self.users: set[int] = set()
        # An entry whose events name parties nobody knows (a bug) may have touched
        # anything: then everything decided after it is undone.
        self.everything = False

    def add(self, entry: Entry) -> None:
        touched = _touched(entry)
        if touched is None:
            self.everything = True
            return
        markets, _, users = touched
        self.markets |= markets
        self.users |= users

    def touches(self, entry: Entry) -> bool:
        """Whether `entry` builds on quarantined state; if so, it joins the quarantine."""
        touched = _touched(entry)
        if self.everything or touched is None:
            self.everything = True
            return True
        markets, actors, users = touched
        if markets.isdisjoint(self.markets) and actors.isdisjoint(self.users):
            if entry.balances:  # a feed must not show a balance that will be undone
                for user_id in self.users.intersection(entry.balances):
                    del entry.balances[user_id]
            return False
        self.markets |= markets
        self.users |= users
        return True


def _touched(entry: Entry) -> tuple[set[int], set[int], set[int]] | None:
    """(markets, users whose state decided the command, every user it changed); None
    when its events are of a type nobody knows."""
    try:
        deciding, changed = parties(entry.events)
    except AssertionError:
        return None
    markets = {m for m in (getattr(e, "market_id", None) for e in entry.events) if m is not None}
    deciding.update(entry.balances or ())  # the feed's balances were read too
    return markets, deciding, deciding | changed


def _is_transient(exc: BaseException) -> bool:
    """Whether retrying the same batch can succeed: Postgres away, a conflict, a
    passing shortage; not a refusal of the data (asyncpg's DataError, raised also
    when a value cannot even be encoded, is an InterfaceError too)."""
    if isinstance(exc, asyncpg.exceptions.DataError):
        return False
    if isinstance(exc, UNAVAILABLE_ERRORS + CONFLICT_ERRORS):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return False


def _repeats_key(cause: BaseException) -> bool:
    return (
        isinstance(cause, asyncpg.UniqueViolationError)
        and cause.constraint_name in REPEATED_KEY_CONSTRAINTS
    )


def _answer(entry: Entry, error: Exception) -> None:
    """Tell whoever waits for `entry` that it was not recorded."""
    waiter, entry.waiter = entry.waiter, None
    if waiter is not None and not waiter.done():
        waiter.set_exception(error)
        waiter.exception()  # retrieved: a caller that gave up waiting is not an error


class LedgerWriter:
    def __init__(
        self,
        database_url: str,
        *,
        backlog_max: int,
        copy_batch_min: int = COPY_BATCH_MIN,
        batch_entries_max: int = BATCH_ENTRIES_MAX,
    ) -> None:
        self._database_url = database_url
        # Batches this large are written by COPY; a backlog this large is translated a
        # batch ahead, while the previous batch commits.
        self.copy_batch_min = copy_batch_min
        self.batch_entries_max = batch_entries_max
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
        self._last_batch_id: int | None = None  # batches are numbered as translated; `load`
        self.stalled_since: float | None = None  # monotonic time of the first failed try
        # Told of every batch right after it commits, in commit order, before any waiter
        # hears: the live feeds (probo/realtime) publish from here. Must not raise.
        self.on_commit: Callable[[list[Entry]], None] | None = None
        # Paused and rebuilt when the ledger refuses what it decided (None: nothing to undo).
        self.engine: EngineControl | None = None
        self._quarantine: _Quarantine | None = None

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
        """Read the account ids and position cost bases the translation needs, and the
        number of the last batch committed."""
        self._last_batch_id = await store.last_batch_id(conn)
        for row in await store.user_and_market_accounts(conn):
            if row["user_id"] is not None:
                self._cash_accounts[row["user_id"]] = row["id"]
            else:
                self._escrow_accounts[row["market_id"]] = row["id"]
        self._positions = {
            (r["user_id"], r["market_id"]): PositionCost(r[2], r[3], r[4], r[5], r[6], r[7])
            for r in await store.position_costs(conn)
        }

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # --- the consumer ------------------------------------------------------------------

    async def run(self) -> None:
        # Under a backlog the next batch is translated while this one commits.
        ahead: asyncio.Task[BatchRows | None] | None = None
        ahead_batch: list[Entry] = []
        try:
            while True:
                rows: BatchRows | None = None
                if ahead is not None:
                    batch, task, ahead = ahead_batch, ahead, None
                    try:
                        rows = await task
                    except Exception as exc:  # a bug: translate it the ordinary way
                        logger.opt(exception=exc).error("translating a batch ahead failed")
                elif self._pending:
                    batch = self._take()
                    if self._quarantine is not None:
                        batch = self._undo_quarantined(batch)
                        if not batch:
                            continue
                elif self._quarantine is not None:
                    await self._end_quarantine()
                    continue
                else:
                    await self._wakeup.wait()
                    self._wakeup.clear()
                    continue
                self._in_progress = len(batch)
                try:
                    if rows is None:
                        rows = await self._translated(batch)
                    # Only now: the next batch builds on this one's positions.
                    if len(self._pending) >= self.copy_batch_min and self._quarantine is None:
                        ahead_batch = self._take()
                        self._in_progress += len(ahead_batch)
                        ahead = asyncio.create_task(self._build_ahead(ahead_batch))
                    await self._commit_until_done(batch, rows)
                except _Refused:
                    await self._refused(batch, rows, ahead, ahead_batch)
                    ahead = None
                    continue
                self._in_progress -= len(batch)
                self._published(batch)
        finally:
            if ahead is not None:
                ahead.cancel()
            await self.close()

    def _take(self) -> list[Entry]:
        count = min(len(self._pending), self.batch_entries_max)
        return [self._pending.popleft() for _ in range(count)]

    def _published(self, batch: list[Entry]) -> None:
        """After the commit: the feeds first, then everyone waiting for an answer."""
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

    def _build(self, batch: list[Entry]) -> BatchRows:
        return self._built(
            build_batch(
                batch, self._cash_accounts, self._escrow_accounts, self._positions, self._not_new
            )
        )

    async def _build_ahead(self, batch: list[Entry]) -> BatchRows | None:
        """Translate `batch` in steps, yielding to the commit in flight between them.
        None when it names an account not yet looked up: the connection is busy, so it is
        translated after the commit."""
        users, markets = self._missing_accounts(batch)
        if users or markets:
            return None
        steps = build_batch_in_steps(
            batch, self._cash_accounts, self._escrow_accounts, self._positions, self._not_new
        )
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return self._built(done.value)
            await asyncio.sleep(0)

    def _built(self, rows: BatchRows) -> BatchRows:
        assert self._last_batch_id is not None, "LedgerWriter.load() was not called"
        self._last_batch_id += 1
        rows.batch_id = self._last_batch_id
        # Later batches build on this one: it will commit before them (or be undone).
        positions = self._positions
        rows.positions_before = {key: positions.get(key) for key in rows.positions}
        positions.update(rows.positions)
        self._not_new.update(rows.not_new)
        return rows

    def _undo(self, rows: BatchRows) -> None:
        """Forget the latest translated batch: it did not commit."""
        assert rows.batch_id == self._last_batch_id, "undo translated batches newest first"
        self._last_batch_id -= 1
        for key, before in rows.positions_before.items():
            if before is None:
                del self._positions[key]
            else:
                self._positions[key] = before
        self._not_new.difference_update(rows.not_new)

    async def _put_back_ahead(
        self, task: asyncio.Task[BatchRows | None], batch: list[Entry]
    ) -> None:
        """Cancel the translation ahead (undoing it if done) and requeue its entries."""
        task.cancel()
        try:
            rows = await task
        except (asyncio.CancelledError, Exception):
            rows = None
        if rows is not None:
            self._undo(rows)
        self._pending.extendleft(reversed(batch))
        self._in_progress -= len(batch)

    # --- what the ledger refuses --------------------------------------------------------------

    async def _refused(
        self,
        batch: list[Entry],
        rows: BatchRows | None,
        ahead: asyncio.Task[BatchRows | None] | None,
        ahead_batch: list[Entry],
    ) -> None:
        """`batch` (translated as `rows`, if it got that far) was refused for its data."""
        if self.engine is not None:
            self.engine.pause()  # nothing more is decided on what may have to be undone
        if ahead is not None:  # built on this batch: back to the queue
            await self._put_back_ahead(ahead, ahead_batch)
        if rows is not None:
            self._undo(rows)
        await self._isolate(batch)
        if self._quarantine is None and self.engine is not None:
            self.engine.resume()  # it all committed in parts: nothing to undo
        self._in_progress = 0

    async def _isolate(self, batch: list[Entry]) -> None:
        """`batch` was refused for what it holds: commit what comes before the entry that
        is refused on its own, refuse that one, and requeue the rest (quarantined)."""
        failing = await self._commit_or_find(batch)
        if failing is None:
            logger.warning("a refused ledger batch of {} entries committed after all", len(batch))
            return
        index, cause = failing
        self._refuse(batch[index], cause)
        self._pending.extendleft(reversed(batch[index + 1 :]))

    async def _commit_or_find(self, entries: list[Entry]) -> tuple[int, BaseException] | None:
        """Commit `entries`, or the longest prefix of them that commits: None when all
        did, else the index of the first entry refused on its own (nothing after it
        committed) and why. The splits are in order, so every commit is a prefix."""
        refused = await self._try(entries)
        if refused is None:
            return None
        if len(entries) == 1:
            return 0, refused.cause
        middle = len(entries) // 2
        failing = await self._commit_or_find(entries[:middle])
        if failing is not None:
            return failing
        failing = await self._commit_or_find(entries[middle:])
        return None if failing is None else (middle + failing[0], failing[1])

    async def _try(self, entries: list[Entry]) -> _Refused | None:
        """Translate and commit `entries` as one batch; the refusal when it is refused."""
        rows: BatchRows | None = None
        try:
            rows = await self._translated(entries)
            await self._commit_until_done(entries, rows)
        except _Refused as refused:
            if rows is not None:
                self._undo(rows)
            return refused
        self._published(entries)
        return None

    def _refuse(self, entry: Entry, cause: BaseException) -> None:
        """Answer `entry`, which Postgres refused on its own, and quarantine what it
        touched: the engine must forget it."""
        if self._quarantine is None:
            self._quarantine = _Quarantine()
        self._quarantine.add(entry)
        events = repr(list(entry.events))[:REFUSED_ENTRY_LOGGED_CHARS_MAX]
        if _repeats_key(cause):  # a key used before the engine's memory began
            logger.warning("a key used long ago was used again; the original stands: {}", events)
            metrics.LEDGER_ENTRIES_NOT_RECORDED.labels("repeated").inc()
            _answer(entry, EntryRepeatsKey())
            return
        logger.critical(
            "the ledger refused an engine decision on its own ({!r}): not recorded, answered "
            "with an error; what was decided after it on its markets and users is undone and "
            "the engine rebuilt from Postgres. The entry: {}",
            cause,
            events,
        )
        metrics.LEDGER_ENTRIES_NOT_RECORDED.labels("refused").inc()
        _answer(entry, EntryRefused())

    def _undo_quarantined(self, batch: list[Entry]) -> list[Entry]:
        """`batch` without the entries that build on quarantined state, answered undone."""
        quarantine = self._quarantine
        assert quarantine is not None
        kept = []
        for entry in batch:
            if quarantine.touches(entry):
                metrics.LEDGER_ENTRIES_NOT_RECORDED.labels("undone").inc()
                _answer(entry, EntryUndone())
            else:
                kept.append(entry)
        return kept

    async def _end_quarantine(self) -> None:
        """Everything decided before the pause is written or undone: the engine takes
        Postgres's state and goes on."""
        quarantine, self._quarantine = self._quarantine, None
        assert quarantine is not None
        if self.engine is not None:
            await self.engine.rebuild()
            metrics.ENGINE_REBUILDS.inc()
        logger.warning(
            "engine rebuilt from the ledger; undone decisions touched markets {} and {} users",
            sorted(quarantine.markets),
            len(quarantine.users),
        )

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
                    # Small statements: compiling one (JIT) costs more than running it.
                    "jit": "off",
                },
            )
        return self._conn

    async def _translated(self, batch: list[Entry]) -> BatchRows:
        """The rows of `batch`, once the account ids it names are known."""

        async def translate(conn: asyncpg.Connection) -> BatchRows:
            await self._fetch_missing_accounts(conn, batch)
            return self._build(batch)

        return await self._until_done(batch, translate)

    async def _commit_until_done(self, batch: list[Entry], rows: BatchRows) -> None:
        """Write `batch`'s rows until they commit (the same rows every time)."""

        tried = False

        async def write(conn: asyncpg.Connection) -> None:
            nonlocal tried
            # A try that failed may have committed all the same (the connection dropped
            # after the commit, before its answer): then it is done.
            if tried and await store.last_batch_id(conn) >= rows.batch_id:
                logger.warning("ledger batch {} had committed before its retry", rows.batch_id)
                return
            tried = True
            started = time.perf_counter()
            if len(batch) >= self.copy_batch_min:
                async with conn.transaction():
                    await store.write_batch_by_copy(conn, rows)
            else:
                await store.write_batch_by_call(conn, rows)
            metrics.LEDGER_BATCH_SECONDS.observe(time.perf_counter() - started)
            metrics.LEDGER_BATCH_ENTRIES.observe(len(batch))

        await self._until_done(batch, write)

    async def _until_done(
        self, batch: list[Entry], step: Callable[[asyncpg.Connection], Awaitable[_T]]
    ) -> _T:
        """`step` on the writer's connection, retried with backoff until it succeeds."""
        tries = 0
        while True:
            try:
                result = await step(await self._connection())
                if self.stalled_since is not None:
                    logger.info("ledger writer recovered after {} tries", tries)
                    self.stalled_since = None
                return result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.LEDGER_COMMIT_FAILURES.inc()
                if not _is_transient(exc):  # the same rows would fail again: split them
                    logger.opt(exception=exc).error(
                        "ledger batch of {} entries refused for its data ({!r})", len(batch), exc
                    )
                    self.stalled_since = None
                    raise _Refused(exc) from exc
                if self.stalled_since is None:
                    self.stalled_since = time.monotonic()
                delay = RETRY_BACKOFF_S[min(tries, len(RETRY_BACKOFF_S) - 1)]
                tries += 1
                if isinstance(exc, UNAVAILABLE_ERRORS):
                    self._drop_connection()
                logger.warning(
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
        users, markets = self._missing_accounts(batch)
        if users:
            self._cash_accounts.update(await store.cash_account_ids(conn, users))
        if markets:
            self._escrow_accounts.update(await store.escrow_account_ids(conn, markets))

    def _missing_accounts(self, batch: list[Entry]) -> tuple[set[int], set[int]]:
        """Users and markets in `batch` whose account ids the writer has not looked up:
        those the translation moves money of (batch.py's `accounts_named` lists which
        events name which, and fails on an event it does not know)."""
        users, markets = accounts_named(batch)
        cash, escrow = self._cash_accounts, self._escrow_accounts
        return {u for u in users if u not in cash}, {m for m in markets if m not in escrow}
