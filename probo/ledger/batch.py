"""Events into rows: the pure translation of one batch for the ledger writer.

Money moves as transfers (kind `trade` for every fill, `split` and `merge`, `withdrawal`
and its `fee`, and at
resolution `payout` then `fee`), balances as per-account deltas summed over the
batch, orders as new rows (final state within the batch) or deltas on rows from
earlier batches, positions as absolute values with an average-cost basis, realised
P&L and the resolution's payout, markets as status, outcome, volume and last price.

Every engine event type has its translator in `_TRANSLATORS`, those that change
nothing included; an event of any other type is a bug and fails the batch, which the
writer then refuses (it is never skipped: a skipped event could drop money). Before a
batch is handed over, its balance changes are checked against its transfers and to sum
to zero (double entry, SPEC §3 invariant 1).

Nothing here touches the caches it is given: the writer applies `positions` and
`not_new` after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import datetime
from typing import Any

from probo.ledger.types import PAYOUTS_PENDING_ACCOUNT_ID, PLATFORM_FEES_ACCOUNT_ID
from probo.orderbook import (
    CONTRACT_PAYOUT,
    Entry,
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
    own_price,
)

STEP_ENTRIES = 256  # entries translated between two pauses of build_batch_in_steps
STEP_TRANSFERS = 4096  # transfers checked between two pauses (about as long as a step of entries)
# completed_at, reason, decided_by, decided_at, provider, provider_reference,
# payout_requested_at, reconciled_at: a withdrawal's lifecycle, which the wallet moves
# on after commit.
_WITHDRAWAL_LIFECYCLE_UNSET = (None, None, None, None, None, None, None, None)
# The cost basis of each contract a split makes (and the price a merge gives each up at).
PAIR_HALF_PRICE = CONTRACT_PAYOUT // 2


class PositionCost:
    """A user's contracts in one market with their cost basis (paise) and realised P&L."""

    __slots__ = ("yes", "no", "yes_cost", "no_cost", "realized", "payout")

    def __init__(
        self,
        yes: int = 0,
        no: int = 0,
        yes_cost: int = 0,
        no_cost: int = 0,
        realized: int = 0,
        payout: int = 0,
    ) -> None:
        self.yes = yes
        self.no = no
        self.yes_cost = yes_cost
        self.no_cost = no_cost
        self.realized = realized
        self.payout = payout  # gross paid at resolution (the fee is in `realized`)

    def copy(self) -> PositionCost:
        return PositionCost(
            self.yes, self.no, self.yes_cost, self.no_cost, self.realized, self.payout
        )

    def settle(self, gross: int, fee: int) -> None:
        """Resolution: every contract paid `gross` in all, less `fee`; the position closes."""
        self.realized += gross - fee - self.yes_cost - self.no_cost
        self.payout = gross
        self.yes = self.no = self.yes_cost = self.no_cost = 0

    def trade(self, outcome: str, contracts: int, price: int) -> None:
        """`contracts` (signed) of `outcome` bought (+) or sold (-) at `price` each.

        A sale realises its price less the average cost of what it gives up; the last
        contract out takes whatever cost is left, so the basis ends at exactly 0.
        """
        held, cost = (self.yes, self.yes_cost) if outcome == "yes" else (self.no, self.no_cost)
        if contracts > 0:
            held += contracts
            cost += price * contracts
        else:
            sold = -contracts
            released = cost if sold >= held else cost * sold // held
            self.realized += price * sold - released
            cost -= released
            held -= sold
        if outcome == "yes":
            self.yes, self.yes_cost = held, cost
        else:
            self.no, self.no_cost = held, cost


class MarketChange:
    """What one batch changes of a market row."""

    __slots__ = ("status", "outcome", "volume", "last_price")

    def __init__(self) -> None:
        self.status: str | None = None
        self.outcome: str | None = None
        self.volume = 0  # contracts traded in this batch
        self.last_price: int | None = None  # YES price of the batch's last trade


class BatchRows:
    """Everything one batch writes, in the shapes the writer's statements take."""

    __slots__ = (
        "batch_id",
        "new_orders",
        "order_updates",
        "trades",
        "transfers",
        "account_deltas",
        "positions",
        "withdrawals",
        "markets",
        "not_new",
        "realized",
        "positions_before",
    )

    def __init__(self) -> None:
        self.batch_id = 0  # numbered by the writer, in commit order
        self.new_orders: list[list[Any]] = []
        self.order_updates: list[tuple[Any, ...]] = []
        self.trades: list[tuple[Any, ...]] = []
        # (debit account, credit account, amount, kind, ref type, ref id, at)
        self.transfers: list[tuple[Any, ...]] = []
        self.account_deltas: dict[int, int] = {}  # account id -> net change, never 0
        self.positions: dict[tuple[int, int], PositionCost] = {}
        self.withdrawals: list[tuple[Any, ...]] = []
        self.markets: dict[int, MarketChange] = {}
        self.not_new: set[int] = set()
        # (user, market, change of realised P&L) of the positions this batch changes.
        self.realized: list[tuple[int, int, int]] = []
        # The writer's cached positions these rows replace, kept to undo them.
        self.positions_before: dict[tuple[int, int], PositionCost | None] = {}


# Indexes into a new order row (see _ORDER_COLUMNS in store.py).
_FILLED, _COST, _STATUS, _REASON, _UPDATED = 9, 10, 11, 12, 15
# Indexes into an update of an order from an earlier batch: [filled delta, cost delta,
# status, reason, at].
_UPDATE_FILLED, _UPDATE_COST, _UPDATE_STATUS, _UPDATE_REASON, _UPDATE_AT = 0, 1, 2, 3, 4


def _unknown_event(event: object) -> AssertionError:
    """An event the ledger has no translation of: a bug, never skipped."""
    return AssertionError(f"the ledger does not know {type(event).__name__} events")


class _BatchBuilder:
    """One batch's rows while they are built, and the writer's caches they read."""

    __slots__ = (
        "rows",
        "new_orders",
        "updates",
        "cash_accounts",
        "escrow_accounts",
        "positions",
        "not_new",
    )

    def __init__(
        self,
        cash_accounts: Mapping[int, int],
        escrow_accounts: Mapping[int, int],
        positions: Mapping[tuple[int, int], PositionCost],
        not_new: set[int],
    ) -> None:
        self.rows = BatchRows()
        self.new_orders: dict[int, list[Any]] = {}  # order id -> its new row
        self.updates: dict[int, list[Any]] = {}  # order id -> update of an earlier batch's row
        self.cash_accounts = cash_accounts  # user id -> user_cash account id
        self.escrow_accounts = escrow_accounts  # market id -> market_escrow account id
        self.positions = positions  # as of the previous batch
        self.not_new = not_new  # users already marked not new

    def market(self, market_id: int) -> MarketChange:
        markets = self.rows.markets
        change = markets.get(market_id)
        if change is None:
            change = markets[market_id] = MarketChange()
        return change

    def position(self, user_id: int, market_id: int) -> PositionCost:
        """The user's position as this batch has changed it so far."""
        key = (user_id, market_id)
        changed = self.rows.positions
        current = changed.get(key)
        if current is None:
            base = self.positions.get(key)
            current = changed[key] = base.copy() if base is not None else PositionCost()
        return current

    def order_update(self, order_id: int, at: datetime) -> list[Any]:
        update = self.updates.get(order_id)
        if update is None:
            update = self.updates[order_id] = [0, 0, None, None, at]
        return update

    def fill(self, order_id: int, quantity: int, cost: int, filled: bool, at: datetime) -> None:
        row = self.new_orders.get(order_id)
        if row is not None:
            row[_FILLED] += quantity
            row[_COST] += cost
            if filled:
                row[_STATUS] = "filled"
            row[_UPDATED] = at
            return
        update = self.order_update(order_id, at)
        update[_UPDATE_FILLED] += quantity
        update[_UPDATE_COST] += cost
        if filled:
            update[_UPDATE_STATUS] = "filled"
        update[_UPDATE_AT] = at

    def cancel(self, order_id: int, reason: str, at: datetime) -> None:
        row = self.new_orders.get(order_id)
        if row is not None:
            row[_STATUS] = "canceled"
            row[_REASON] = reason
            row[_UPDATED] = at
            return
        update = self.order_update(order_id, at)
        update[_UPDATE_STATUS] = "canceled"
        update[_UPDATE_REASON] = reason
        update[_UPDATE_AT] = at

    def move(
        self,
        debit: int,
        credit: int,
        amount: int,
        kind: str,
        ref_type: str,
        ref_id: int,
        at: datetime,
    ) -> None:
        """One transfer, and the two balance changes it makes."""
        rows = self.rows
        rows.transfers.append((debit, credit, amount, kind, ref_type, ref_id, at))
        deltas = rows.account_deltas
        deltas[debit] = deltas.get(debit, 0) - amount
        deltas[credit] = deltas.get(credit, 0) + amount

    def finish(self) -> BatchRows:
        rows = self.rows
        rows.new_orders = list(self.new_orders.values())
        rows.order_updates = [(order_id, *update) for order_id, update in self.updates.items()]
        deltas = rows.account_deltas
        for account_id in [a for a, d in deltas.items() if d == 0]:
            del deltas[account_id]
        for key, position in rows.positions.items():
            before = self.positions.get(key)
            realized = position.realized - (before.realized if before is not None else 0)
            if realized:
                rows.realized.append((key[0], key[1], realized))
        return rows


# --- one translator per engine event type ------------------------------------------------


def _order_accepted(builder: _BatchBuilder, order: OrderAccepted, at: datetime) -> None:
    """A new order row (a market order's has no price); its owner is no longer new."""
    price = order.price if order.type == "limit" else None
    builder.new_orders[order.order_id] = [
        order.order_id, order.user_id, order.market_id, order.outcome, order.side, order.type,
        order.time_in_force, price, order.quantity, 0, 0, "open", None, order.client_order_id, at, at,
    ]  # fmt: skip
    if order.user_id not in builder.not_new:
        builder.rows.not_new.add(order.user_id)


def _trade_executed(builder: _BatchBuilder, trade: TradeExecuted, at: datetime) -> None:
    """The trade row, the market's volume, both orders' fills, the cash and the positions."""
    market_id, quantity, yes_price = trade.market_id, trade.quantity, trade.yes_price
    builder.rows.trades.append(
        (
            trade.trade_id, market_id, trade.kind, yes_price, quantity, trade.taker_order_id,
            trade.taker_user_id, trade.taker_outcome, trade.taker_side, trade.maker_order_id,
            trade.maker_user_id, trade.maker_outcome, trade.maker_side, at,
        )
    )  # fmt: skip
    change = builder.market(market_id)
    change.volume += quantity
    change.last_price = yes_price
    _trade_cash(builder, trade, at)
    # Each party's order and position, at the price in its own outcome's terms.
    taker_outcome = trade.taker_outcome
    taker_price = own_price(taker_outcome, yes_price)
    taker_filled = trade.taker_remaining == 0
    builder.fill(trade.taker_order_id, quantity, taker_price * quantity, taker_filled, at)
    taker_contracts = trade.taker_yes_delta if taker_outcome == "yes" else trade.taker_no_delta
    position = builder.position(trade.taker_user_id, market_id)
    position.trade(taker_outcome, taker_contracts, taker_price)
    maker_outcome = trade.maker_outcome
    maker_price = own_price(maker_outcome, yes_price)
    maker_filled = trade.maker_remaining == 0
    builder.fill(trade.maker_order_id, quantity, maker_price * quantity, maker_filled, at)
    maker_contracts = trade.maker_yes_delta if maker_outcome == "yes" else trade.maker_no_delta
    position = builder.position(trade.maker_user_id, market_id)
    position.trade(maker_outcome, maker_contracts, maker_price)


def _trade_cash(builder: _BatchBuilder, trade: TradeExecuted, at: datetime) -> None:
    """One party pays the other (transfer), both pay into the escrow (mint), or the
    escrow pays both (merge): a contract pair in escrow is worth `CONTRACT_PAYOUT`."""
    escrow_delta = trade.escrow_delta
    assert trade.taker_cash_delta + trade.maker_cash_delta + escrow_delta == 0 and (
        escrow_delta in (0, CONTRACT_PAYOUT * trade.quantity, -CONTRACT_PAYOUT * trade.quantity)
    ), f"trade {trade.trade_id} creates or destroys money: {trade!r}"
    taker = builder.cash_accounts[trade.taker_user_id]
    maker = builder.cash_accounts[trade.maker_user_id]
    trade_id = trade.trade_id
    if escrow_delta == 0:
        if trade.taker_cash_delta < 0:
            builder.move(taker, maker, -trade.taker_cash_delta, "trade", "trade", trade_id, at)
        else:
            builder.move(maker, taker, -trade.maker_cash_delta, "trade", "trade", trade_id, at)
    elif escrow_delta > 0:
        escrow = builder.escrow_accounts[trade.market_id]
        builder.move(taker, escrow, -trade.taker_cash_delta, "trade", "trade", trade_id, at)
        builder.move(maker, escrow, -trade.maker_cash_delta, "trade", "trade", trade_id, at)
    else:
        escrow = builder.escrow_accounts[trade.market_id]
        builder.move(escrow, taker, trade.taker_cash_delta, "trade", "trade", trade_id, at)
        builder.move(escrow, maker, trade.maker_cash_delta, "trade", "trade", trade_id, at)


def _order_canceled(builder: _BatchBuilder, cancel: OrderCanceled, at: datetime) -> None:
    """The order's status and reason (its lock was engine state, not a transfer)."""
    builder.cancel(cancel.order_id, cancel.reason, at)


def _withdrawal_accepted(
    builder: _BatchBuilder, withdrawal: WithdrawalAccepted, at: datetime
) -> None:
    """The withdrawal row, its money on the way out (payouts_pending) and its fee."""
    withdrawal_id, amount, fee = withdrawal.withdrawal_id, withdrawal.amount, withdrawal.fee
    status = "pending" if withdrawal.held_for_review else "processing"
    # Whole rows of the table, in its column order (schema.sql): the lifecycle's
    # columns start empty.
    builder.rows.withdrawals.append(
        (withdrawal_id, withdrawal.user_id, withdrawal.idempotency_key, amount, status, at, fee)
        + _WITHDRAWAL_LIFECYCLE_UNSET
    )
    cash = builder.cash_accounts[withdrawal.user_id]
    pending = PAYOUTS_PENDING_ACCOUNT_ID
    builder.move(cash, pending, amount, "withdrawal", "withdrawal", withdrawal_id, at)
    if fee:
        builder.move(cash, PLATFORM_FEES_ACCOUNT_ID, fee, "fee", "withdrawal", withdrawal_id, at)


def _market_status_changed(
    builder: _BatchBuilder, change: MarketStatusChanged, at: datetime
) -> None:
    builder.market(change.market_id).status = change.status


def _settlement(builder: _BatchBuilder, settlement: Settlement, at: datetime) -> None:
    """The market resolved: each payout out of the escrow then its fee, and every
    holder's position closed."""
    released = sum(payout.gross for payout in settlement.payouts)
    assert released == settlement.escrow_released, f"payouts do not add up: {settlement!r}"
    market_id = settlement.market_id
    change = builder.market(market_id)
    change.status = "resolved"
    change.outcome = settlement.outcome
    escrow = builder.escrow_accounts[market_id]
    for payout in settlement.payouts:
        cash = builder.cash_accounts[payout.user_id]
        builder.move(escrow, cash, payout.gross, "payout", "market", market_id, at)
        if payout.fee:
            builder.move(cash, PLATFORM_FEES_ACCOUNT_ID, payout.fee, "fee", "market", market_id, at)
    _close_positions(builder, settlement)


def _close_positions(builder: _BatchBuilder, settlement: Settlement) -> None:
    """Every holder's position closes, the losing side's (paid nothing) too."""
    market_id = settlement.market_id
    paid = {payout.user_id: payout for payout in settlement.payouts}
    holders = {u for (u, m) in builder.positions if m == market_id}
    holders.update(u for (u, m) in builder.rows.positions if m == market_id)
    for user_id in sorted(holders):
        held = builder.position(user_id, market_id)
        payout = paid.get(user_id)
        if held.yes or held.no or payout is not None:
            held.settle(payout.gross if payout else 0, payout.fee if payout else 0)


def _pairs_changed(builder: _BatchBuilder, pairs: PairsChanged, at: datetime) -> None:
    """A split (cash into the escrow, a YES and a NO per pair) or a merge (back). Each
    contract of a split pair costs half the payout; a merge sells both at that price,
    realising the payout less what the pair cost."""
    cash = builder.cash_accounts[pairs.user_id]
    escrow = builder.escrow_accounts[pairs.market_id]
    amount = CONTRACT_PAYOUT * pairs.quantity
    contracts = pairs.quantity if pairs.kind == "split" else -pairs.quantity
    if pairs.kind == "split":
        builder.move(cash, escrow, amount, "split", "market", pairs.market_id, at)
    else:
        builder.move(escrow, cash, amount, "merge", "market", pairs.market_id, at)
    position = builder.position(pairs.user_id, pairs.market_id)
    position.trade("yes", contracts, PAIR_HALF_PRICE)
    position.trade("no", contracts, PAIR_HALF_PRICE)


def _changes_nothing(
    builder: _BatchBuilder,
    event: OrderRejected | OrderDuplicate | WithdrawalRejected | WithdrawalDuplicate,
    at: datetime,
) -> None:
    """A refused command, or the repeat of an order or withdrawal already made: no row,
    no money."""


_TRANSLATORS: dict[type, Callable[[_BatchBuilder, Any, datetime], None]] = {
    OrderAccepted: _order_accepted,
    TradeExecuted: _trade_executed,
    OrderCanceled: _order_canceled,
    WithdrawalAccepted: _withdrawal_accepted,
    MarketStatusChanged: _market_status_changed,
    Settlement: _settlement,
    PairsChanged: _pairs_changed,
    OrderRejected: _changes_nothing,
    OrderDuplicate: _changes_nothing,
    WithdrawalRejected: _changes_nothing,
    WithdrawalDuplicate: _changes_nothing,
}


# --- the account ids a translation reads ------------------------------------------------


def _trade_accounts(trade: TradeExecuted, users: set[int], markets: set[int]) -> None:
    users.add(trade.taker_user_id)
    users.add(trade.maker_user_id)
    if trade.escrow_delta:  # a mint or a merge
        markets.add(trade.market_id)


def _withdrawal_accounts(
    withdrawal: WithdrawalAccepted, users: set[int], markets: set[int]
) -> None:
    users.add(withdrawal.user_id)


def _settlement_accounts(settlement: Settlement, users: set[int], markets: set[int]) -> None:
    markets.add(settlement.market_id)
    users.update(payout.user_id for payout in settlement.payouts)


def _pairs_accounts(pairs: PairsChanged, users: set[int], markets: set[int]) -> None:
    users.add(pairs.user_id)
    markets.add(pairs.market_id)


def _names_no_account(event: object, users: set[int], markets: set[int]) -> None:
    """Orders, cancels, refusals and status changes move no money."""


# The users' cash and the markets' escrow accounts each event's translator moves money of.
_ACCOUNTS_NAMED: dict[type, Callable[[Any, set[int], set[int]], None]] = {
    TradeExecuted: _trade_accounts,
    WithdrawalAccepted: _withdrawal_accounts,
    Settlement: _settlement_accounts,
    PairsChanged: _pairs_accounts,
    OrderAccepted: _names_no_account,
    OrderCanceled: _names_no_account,
    MarketStatusChanged: _names_no_account,
    OrderRejected: _names_no_account,
    OrderDuplicate: _names_no_account,
    WithdrawalRejected: _names_no_account,
    WithdrawalDuplicate: _names_no_account,
}


def accounts_named(batch: Iterable[Entry]) -> tuple[set[int], set[int]]:
    """(users, markets) whose cash and escrow account ids translating `batch` reads."""
    users: set[int] = set()
    markets: set[int] = set()
    named = _ACCOUNTS_NAMED
    for entry in batch:
        for event in entry.events:
            name = named.get(type(event))
            if name is None:
                raise _unknown_event(event)
            name(event, users, markets)
    return users, markets


# --- the batch ------------------------------------------------------------------------------


def build_batch(
    batch: Iterable[Entry],
    cash_accounts: Mapping[int, int],
    escrow_accounts: Mapping[int, int],
    positions: Mapping[tuple[int, int], PositionCost],
    not_new: set[int],
) -> BatchRows:
    """The rows of `batch`, in one go."""
    steps = build_batch_in_steps(batch, cash_accounts, escrow_accounts, positions, not_new)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def build_batch_in_steps(
    batch: Iterable[Entry],
    cash_accounts: Mapping[int, int],
    escrow_accounts: Mapping[int, int],
    positions: Mapping[tuple[int, int], PositionCost],
    not_new: set[int],
) -> Generator[None, None, BatchRows]:
    """`build_batch`, pausing after every `STEP_ENTRIES` entries: the writer builds the
    next batch in the gaps while the previous one commits."""
    builder = _BatchBuilder(cash_accounts, escrow_accounts, positions, not_new)
    translators = _TRANSLATORS
    for done, entry in enumerate(batch, 1):
        if done % STEP_ENTRIES == 0:
            yield
        at = entry.at
        for event in entry.events:
            translate = translators.get(type(event))
            if translate is None:
                raise _unknown_event(event)
            translate(builder, event, at)
    rows = builder.finish()
    yield from _double_entry_in_steps(rows)
    return rows


def assert_double_entry(rows: BatchRows) -> None:
    """The batch's balance changes sum to zero (SPEC §3 invariant 1) and are exactly
    what its transfers move, each a positive amount from one account to another."""
    for _ in _double_entry_in_steps(rows):
        pass


def _double_entry_in_steps(rows: BatchRows) -> Generator[None, None, None]:
    """`assert_double_entry`, pausing after every `STEP_TRANSFERS` transfers."""
    total = sum(rows.account_deltas.values())
    assert total == 0, f"a batch's balance changes sum to {total}, not 0"
    transfers = rows.transfers
    moved: dict[int, int] = {}
    for start in range(0, len(transfers), STEP_TRANSFERS):
        for debit, credit, amount, _, _, _, _ in transfers[start : start + STEP_TRANSFERS]:
            assert amount > 0 and debit != credit, f"transfer of {amount} from {debit} to {credit}"
            moved[debit] = moved.get(debit, 0) - amount
            moved[credit] = moved.get(credit, 0) + amount
        yield
    moved = {account_id: delta for account_id, delta in moved.items() if delta}
    assert moved == rows.account_deltas, (
        f"balance changes {rows.account_deltas} are not the transfers' {moved}"
    )
