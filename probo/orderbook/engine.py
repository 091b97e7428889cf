"""The engine's front door: recovery, one task per market, withdrawals, outside credits.

Each market has a bounded queue and one asyncio task that owns its book: it takes
commands in arrival order, runs them through the `Exchange` (pure and synchronous, so
no check-and-lock ever interleaves with another: all markets share the accounts), and
hands each command's events to the ledger writer as one `Entry`. The command's waiter
is resolved by the writer after the commit, never before.

Start-up recovery (`recovery.py`) rebuilds everything from one Postgres snapshot; the
engine reports ready only then. Credits are applied at most once, keyed by transfer id.

The ledger writer can ask for the same rebuild while running (`pause`, then
`rebuild`): when Postgres refused something the engine had decided, the engine's
state is ahead of the ledger in a way no later commit will fix, so it is replaced by
what Postgres holds. While paused the market tasks hold their next command (orders
keep queueing, bounded as ever); withdrawals and credits are refused as during start-up.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import asyncpg
from loguru import logger

from probo.infra import CONFLICT_ERRORS, UNAVAILABLE_ERRORS
from probo.orderbook.client_ids import CLIENT_ORDER_IDS_RECENT_MAX
from probo.orderbook.credits import CreateUser, EngineCredit, EngineUnavailable
from probo.orderbook.entry import Entry, parties
from probo.orderbook.exchange import Exchange, InvalidMarketTransition
from probo.orderbook.keys import WITHDRAWAL_KEYS_RECENT_MAX, RecentWithdrawals
from probo.orderbook.recovery import Recovered, recover
from probo.orderbook.types import (
    CancelAll,
    CancelOrder,
    CloseMarket,
    Event,
    MarketCommand,
    MergePairs,
    OrderDuplicate,
    OrderRejected,
    PairsCommand,
    PauseMarket,
    PlaceOrder,
    ResolveMarket,
    ResumeMarket,
    SplitPairs,
    Withdraw,
    WithdrawalAccepted,
    WithdrawalDuplicate,
    WithdrawalRejected,
)
from probo.web import ApiError

MARKET_QUEUE_MAX = 10_000  # commands waiting for one market's task
MARKET_BURST_MAX = 256  # commands one task runs before it yields to the loop
REBUILD_BACKOFF_S = (0.05, 0.2, 0.5, 1.0, 2.0)  # between tries of a rebuild Postgres refused

Command = PlaceOrder | CancelOrder | CancelAll | PairsCommand | MarketCommand
_NOTHING_CHANGED = (OrderRejected, OrderDuplicate)  # a command's first event, when refused


class EventSink(Protocol):
    """What the engine needs of the ledger writer."""

    backlog_max: int

    def append(self, entry: Entry) -> None: ...
    @property
    def backlog(self) -> int: ...


class Backpressure(EngineUnavailable):
    """Too much is waiting (a market's queue, or the writer's backlog): retry later."""


class UnknownMarket(ApiError):
    """No market of that id is open in the engine."""

    def __init__(self) -> None:
        super().__init__(404, "not_found", "market not found")


class NotConfirmed(ApiError):
    """Queued but not committed within the wait: it may still complete."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "unavailable", message, headers={"Retry-After": "1"})


class MarketResolved(InvalidMarketTransition):
    """The market is resolved already: nothing about it can change any more."""


class _NullSink:
    """Until the writer is attached (tests of the core path, recovery)."""

    backlog_max = 0
    backlog = 0

    def append(self, entry: Entry) -> None:
        waiter, entry.waiter = entry.waiter, None  # no entry <-> future cycle
        if waiter is not None and not waiter.done():
            waiter.set_result(entry)


class Engine:
    def __init__(self, sink: EventSink | None = None) -> None:
        # How many client order ids (besides open orders') and withdrawal keys the
        # engine remembers; older repeats are answered from Postgres.
        self.client_order_ids_recent_max = CLIENT_ORDER_IDS_RECENT_MAX
        self.withdrawal_keys_recent_max = WITHDRAWAL_KEYS_RECENT_MAX
        self.exchange = Exchange()
        self.ready = False
        self._sink: EventSink = sink or _NullSink()
        self._queues: dict[int, asyncio.Queue[tuple[Command, asyncio.Future[Entry]]]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._withdrawals = RecentWithdrawals()
        self.last_withdrawal_id = 0
        # Credits applied whose outbox row may still exist; emptied as rows are cleared.
        self._applied_transfer_ids: set[int] = set()
        # Users with a live feed: each entry carries their balances after its command.
        self.watched_users: set[int] = set()
        # Each market's `closes_at` (epoch seconds), so order entry can refuse a market
        # past its closing time before the market clock has closed it, reading nothing.
        self.closes_at: dict[int, float] = {}
        self._pool: asyncpg.Pool | None = None  # where `recover` read from; `rebuild` reads again
        # Set while paused: the market tasks wait on it before their next command.
        self._resumed: asyncio.Event | None = None
        self._opened_while_paused: dict[
            int, tuple[int, float | None]
        ] = {}  # id -> (tick, closes_at)

    def attach(self, sink: EventSink) -> None:
        self._sink = sink

    # --- start and stop ------------------------------------------------------------------

    async def recover(self, pool: asyncpg.Pool) -> Recovered:
        self._pool = pool
        recovered = await self._load(pool)
        self.ready = True
        return recovered

    async def _load(self, pool: asyncpg.Pool) -> Recovered:
        """Replace the whole in-memory state by Postgres's."""
        # The loaded objects all survive: collecting while loading them is wasted work.
        gc.disable()
        try:
            recovered = await recover(
                pool,
                client_order_ids_recent_max=self.client_order_ids_recent_max,
                withdrawal_keys_recent_max=self.withdrawal_keys_recent_max,
            )
        finally:
            gc.enable()
        self.closes_at = recovered.closes_at
        self.exchange = recovered.exchange
        self._withdrawals = RecentWithdrawals(
            recovered.withdrawals, self.withdrawal_keys_recent_max
        )
        self.last_withdrawal_id = recovered.last_withdrawal_id
        # The credits the loaded balances include: a delivery of one still in flight
        # must not apply it again. Later credits are not included and will be applied.
        self._applied_transfer_ids = set(recovered.included_transfer_ids)
        return recovered

    # --- undoing what the ledger could not record -----------------------------------------

    @property
    def paused(self) -> bool:
        return self._resumed is not None

    def pause(self) -> None:
        """Decide nothing more until `rebuild`: market tasks hold their next command."""
        if self._resumed is None:
            self._resumed = asyncio.Event()

    def resume(self) -> None:
        """Go on deciding, with nothing to undo."""
        resumed, self._resumed = self._resumed, None
        self._opened_while_paused.clear()
        if resumed is not None:
            resumed.set()

    async def rebuild(self) -> Recovered:
        """Load the state Postgres holds, then resume. Call while paused, once the
        ledger writer has written or refused everything decided before the pause."""
        assert self._pool is not None and self._resumed is not None, "pause() after recover()"
        tries = 0
        while True:  # deciding on the old state would be wrong: only a loaded one will do
            try:
                recovered = await self._load(self._pool)
                break
            except Exception as exc:
                delay = REBUILD_BACKOFF_S[min(tries, len(REBUILD_BACKOFF_S) - 1)]
                tries += 1
                transient = isinstance(exc, UNAVAILABLE_ERRORS + CONFLICT_ERRORS)
                (logger.warning if transient else logger.opt(exception=exc).error)(
                    "engine rebuild failed ({!r}); retry {} in {} s", exc, tries, delay
                )
                await asyncio.sleep(delay)
        # Markets created while the snapshot was read may be missing from it.
        for market_id, (tick, closes_at) in self._opened_while_paused.items():
            if market_id not in self.exchange.markets:
                self.exchange.open_market(market_id, tick)
            if closes_at is not None:
                self.closes_at[market_id] = closes_at
        self._tell_watched_balances()
        self.resume()
        return recovered

    def _tell_watched_balances(self) -> None:
        """Live feeds get every watched user's balance as now loaded, in order after
        whatever the ledger has committed."""
        exchange = self.exchange
        balances = {u: (exchange.cash(u), exchange.locked_cash(u)) for u in self.watched_users}
        if balances:
            self._sink.append(Entry((), datetime.now(UTC), None, balances))

    def start(self) -> None:
        """One task per market (call once the writer is attached)."""
        for market_id in self.exchange.markets:
            self._start_market(market_id)

    def _start_market(self, market_id: int) -> None:
        if market_id in self._tasks:
            return
        queue: asyncio.Queue[tuple[Command, asyncio.Future[Entry]]] = asyncio.Queue(
            MARKET_QUEUE_MAX
        )
        self._queues[market_id] = queue
        task = asyncio.create_task(self._run_market(market_id, queue), name=f"market-{market_id}")
        task.add_done_callback(_report_stopped_market)
        self._tasks[market_id] = task

    async def stop(self) -> None:
        self.ready = False
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._queues.clear()

    def open_market(self, market_id: int, tick: int, closes_at: float | None = None) -> None:
        """A market created in Postgres: open its book and start its task."""
        if closes_at is not None:
            self.closes_at[market_id] = closes_at
        if market_id not in self.exchange.markets:
            self.exchange.open_market(market_id, tick)
        if self._resumed is not None:
            self._opened_while_paused[market_id] = (tick, closes_at)
        self._start_market(market_id)

    # --- orders ----------------------------------------------------------------------------

    def submit(self, command: Command | Withdraw) -> asyncio.Future[Entry]:
        """Queue `command` on its market (a withdrawal is decided at once); the future is
        done once its events commit. Raises UnknownMarket, Backpressure, EngineUnavailable."""
        if not self.ready:
            raise EngineUnavailable("the engine is recovering")
        sink = self._sink
        if sink.backlog >= sink.backlog_max > 0:
            raise Backpressure("too much is waiting to be written; retry shortly")
        if isinstance(command, Withdraw):
            return self._withdraw(command)
        queue = self._queues.get(command.market_id)
        if queue is None:
            raise UnknownMarket()
        waiter: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        try:
            queue.put_nowait((command, waiter))
        except asyncio.QueueFull:
            raise Backpressure("this market's queue is full; retry shortly") from None
        return waiter

    async def _run_market(
        self, market_id: int, queue: asyncio.Queue[tuple[Command, asyncio.Future[Entry]]]
    ) -> None:
        sink = self._sink
        while True:
            command, waiter = await queue.get()
            if self._resumed is not None:
                await self._resumed.wait()
            exchange = self.exchange  # a rebuild replaces it
            for _ in range(MARKET_BURST_MAX):
                try:
                    if type(command) is PlaceOrder:
                        events: list[Event] = exchange.place(command)
                    elif type(command) is CancelOrder:
                        events = exchange.cancel(command)
                    elif type(command) is CancelAll:
                        events = exchange.cancel_all(command)
                    elif type(command) is SplitPairs:
                        events = exchange.split(command)
                    elif type(command) is MergePairs:
                        events = exchange.merge(command)
                    else:
                        events = self._change_market(command)  # type: ignore[arg-type]
                except InvalidMarketTransition as exc:  # refused: nothing changed
                    waiter.set_exception(exc)
                except Exception as exc:  # a bug in the core: fail this command, keep the market
                    logger.opt(exception=exc).critical("engine failed on {!r}", command)
                    waiter.set_exception(exc)
                else:
                    entry = Entry(events, datetime.now(UTC), waiter)
                    # A cancel-all of nothing has no events.
                    if self.watched_users and events and type(events[0]) not in _NOTHING_CHANGED:
                        entry.balances = self._balances_of_watched(events)
                    sink.append(entry)
                if queue.empty():
                    break
                command, waiter = queue.get_nowait()

    def _change_market(self, command: MarketCommand) -> list[Event]:
        """A lifecycle step, in the market's own order with its orders."""
        exchange = self.exchange
        market_id = command.market_id
        if type(command) is PauseMarket:
            return exchange.pause_market(market_id)
        if type(command) is ResumeMarket:
            return exchange.resume_market(market_id)
        if type(command) is CloseMarket:
            return exchange.close_market(market_id)
        assert type(command) is ResolveMarket, command
        if exchange.markets[market_id].status == "resolved":
            raise MarketResolved(f"market {market_id} is resolved")
        # Resolving an open or paused market closes it first, in the same entry: the
        # close and the payouts commit together or not at all.
        events: list[Event] = []
        if exchange.markets[market_id].status != "closed":
            events = exchange.close_market(market_id)
        try:
            settlement = exchange.settle_market(market_id, command.outcome, command.fee_bps)
        except Exception:
            if events:  # the close happened in memory: it must reach the ledger
                self._sink.append(Entry(events, datetime.now(UTC), None))
            raise
        events.append(settlement)
        return events

    def _balances_of_watched(self, events: Sequence[Event]) -> dict[int, tuple[int, int]] | None:
        """(cash, locked) now of the watched users these events touch."""
        deciding, changed = parties(events)
        users = (deciding | changed) & self.watched_users
        if not users:
            return None
        exchange = self.exchange
        return {u: (exchange.cash(u), exchange.locked_cash(u)) for u in users}

    def _check_deciding(self) -> None:
        """What changes the engine in-line (not through a market's queue) waits for no
        rebuild: it is refused, and its caller retries (the mirror's reconciler does)."""
        if not self.ready or self._resumed is not None:
            raise EngineUnavailable("the engine is recovering")

    # --- withdrawals -----------------------------------------------------------------------

    @property
    def withdrawal_keys_remembered(self) -> int:
        return len(self._withdrawals)

    def bound_memory(
        self, client_order_ids_recent_max: int, withdrawal_keys_recent_max: int
    ) -> None:
        """How many client order ids (besides open orders') and withdrawal keys to keep,
        from now on and after a rebuild (the defaults suit production; tests shrink them)."""
        self.client_order_ids_recent_max = client_order_ids_recent_max
        self.withdrawal_keys_recent_max = withdrawal_keys_recent_max
        self.exchange.client_order_ids.recent_max = client_order_ids_recent_max
        self._withdrawals.count_max = withdrawal_keys_recent_max

    def _withdraw(self, command: Withdraw) -> asyncio.Future[Entry]:
        """Decided at once, on the same loop as every market's orders (all share the
        accounts): accepted, refused for funds, or a duplicate of the key's first use."""
        self._check_deciding()
        user_id, amount, key = command.user_id, command.amount, command.idempotency_key
        original = self._withdrawals.get(user_id, key)
        event: Event
        if original is not None:
            event = WithdrawalDuplicate(user_id, key, *original)
        elif not self.exchange.withdraw(user_id, amount + command.fee):
            message = f"{amount + command.fee} paise are not available to withdraw"
            if command.fee:
                message += f" (the amount and a fee of {command.fee} paise)"
            event = WithdrawalRejected(user_id, amount, key, "insufficient_funds", message)
        else:
            self.last_withdrawal_id += 1
            self._withdrawals.remember(user_id, key, self.last_withdrawal_id, amount)
            event = WithdrawalAccepted(
                self.last_withdrawal_id, user_id, amount, key, command.fee, command.held_for_review
            )
        waiter: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        entry = Entry([event], datetime.now(UTC), waiter)
        if self.watched_users and type(event) is WithdrawalAccepted:
            entry.balances = self._balances_of_watched(entry.events)
        self._sink.append(entry)
        return waiter

    # --- invariant 5 ---------------------------------------------------------------------------

    def state(
        self,
    ) -> tuple[
        dict[int, int], dict[tuple[int, int], tuple[int, int]], dict[int, int], dict[int, int]
    ]:
        """(cash per user, contracts per (user, market), escrow per market, open orders'
        remaining) as the engine holds them now."""
        exchange = self.exchange
        escrow = {market_id: exchange.escrow(market_id) for market_id in exchange.markets}
        open_orders = {
            o.order_id: o.remaining for m in exchange.markets for o in exchange.open_orders(m)
        }
        return exchange.cash_by_user(), exchange.positions_by_market(), escrow, open_orders

    # --- outside credits ---------------------------------------------------------------------

    def create_user(self, command: CreateUser) -> None:
        self._check_deciding()
        self.exchange.create_user(command.user_id)

    async def apply_credit(self, credit: EngineCredit) -> bool:
        """Apply `credit` once; False if it was applied before. Raises EngineUnavailable."""
        self._check_deciding()
        if credit.transfer_id in self._applied_transfer_ids:
            return False
        self._applied_transfer_ids.add(credit.transfer_id)
        user_id = credit.user_id
        self.exchange.credit(user_id, credit.amount)
        if user_id in self.watched_users:
            # Through the writer, so the feed tells it in order with the trades before it.
            balance = (self.exchange.cash(user_id), self.exchange.locked_cash(user_id))
            self._sink.append(Entry((), datetime.now(UTC), None, {user_id: balance}))
        return True

    def forget_applied(self, transfer_ids: list[int]) -> None:
        """Their outbox rows are gone, so nothing can offer these credits again."""
        self._applied_transfer_ids.difference_update(transfer_ids)


def _report_stopped_market(task: asyncio.Task[None]) -> None:
    """A market task ends only when the engine stops; anything else is a bug to shout about."""
    if not task.cancelled() and task.exception() is not None:
        logger.opt(exception=task.exception()).critical("{} stopped", task.get_name())


async def decided(
    engine: Engine, command: Command | Withdraw, *, timeout_s: float, unconfirmed: str
) -> Entry:
    """Have the engine decide `command` and wait until the ledger holds the result: the
    one way every service calls the engine. Its events say what was decided (a refusal
    is an event too). Raises UnknownMarket, Backpressure, EngineUnavailable, and
    NotConfirmed(`unconfirmed`) when the commit takes longer than `timeout_s`; a waiter
    failed by the engine or the ledger raises what they set (ApiErrors)."""
    waiter = engine.submit(command)
    try:
        return await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
    except TimeoutError:
        raise NotConfirmed(unconfirmed) from None
