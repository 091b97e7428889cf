"""Events into rows: the pure translation of one batch for the ledger writer.

Money moves as transfers (kind `trade` for every fill, `withdrawal`, and at
resolution `payout` then `fee`), balances as per-account deltas summed over the
batch, orders as new rows (final state within the batch) or deltas on rows from
earlier batches, positions as absolute values with an average-cost basis, realised
P&L and the resolution's payout, markets as status, outcome, volume and last price. Nothing here touches the caches it is given:
the writer applies `positions` and `not_new` after the commit.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping
from datetime import datetime
from typing import Any

from probo.ledger.types import PLATFORM_BANK_ACCOUNT_ID, PLATFORM_FEES_ACCOUNT_ID
from probo.orderbook import (
    Entry,
    MarketStatusChanged,
    OrderAccepted,
    OrderCanceled,
    Settlement,
    TradeExecuted,
    WithdrawalAccepted,
    own_price,
)

STEP_ENTRIES = 256  # entries translated between two pauses of build_batch_in_steps


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
        "positions_before",
    )

    def __init__(self) -> None:
        self.batch_id = 0  # numbered by the writer, in commit order
        self.new_orders: list[list[Any]] = []
        self.order_updates: list[tuple[Any, ...]] = []
        self.trades: list[tuple[Any, ...]] = []
        self.transfers: list[tuple[Any, ...]] = []
        self.account_deltas: dict[int, int] = {}
        self.positions: dict[tuple[int, int], PositionCost] = {}
        self.withdrawals: list[tuple[Any, ...]] = []
        self.markets: dict[int, MarketChange] = {}
        self.not_new: set[int] = set()
        # The writer's cached positions these rows replace, kept to undo them.
        self.positions_before: dict[tuple[int, int], PositionCost | None] = {}


# Indexes into a new order row (see the writer's _ORDER_COLUMNS).
_FILLED, _COST, _STATUS, _REASON, _UPDATED = 9, 10, 11, 12, 15


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
    rows = BatchRows()
    new_orders: dict[int, list[Any]] = {}
    # order id -> [filled delta, cost delta, status, reason, at] for orders of earlier batches
    updates: dict[int, list[Any]] = {}
    deltas = rows.account_deltas
    changed = rows.positions

    def market(market_id: int) -> MarketChange:
        change = rows.markets.get(market_id)
        if change is None:
            change = rows.markets[market_id] = MarketChange()
        return change

    def position(user_id: int, market_id: int) -> PositionCost:
        key = (user_id, market_id)
        current = changed.get(key)
        if current is None:
            base = positions.get(key)
            current = changed[key] = base.copy() if base is not None else PositionCost()
        return current

    def fill(order_id: int, quantity: int, cost: int, filled: bool, at: datetime) -> None:
        row = new_orders.get(order_id)
        if row is not None:
            row[_FILLED] += quantity
            row[_COST] += cost
            if filled:
                row[_STATUS] = "filled"
            row[_UPDATED] = at
            return
        update = updates.get(order_id)
        if update is None:
            update = updates[order_id] = [0, 0, None, None, at]
        update[0] += quantity
        update[1] += cost
        if filled:
            update[2] = "filled"
        update[4] = at

    def move(
        debit: int, credit: int, amount: int, kind: str, ref_type: str, ref_id: int, at: datetime
    ) -> None:
        rows.transfers.append((debit, credit, amount, kind, ref_type, ref_id, at))
        deltas[debit] = deltas.get(debit, 0) - amount
        deltas[credit] = deltas.get(credit, 0) + amount

    for done, entry in enumerate(batch, 1):
        if done % STEP_ENTRIES == 0:
            yield
        at = entry.at
        for event in entry.events:
            kind = type(event)
            if kind is TradeExecuted:
                e: TradeExecuted = event  # type: ignore[assignment]
                q = e.quantity
                taker_price = own_price(e.taker_outcome, e.yes_price)
                maker_price = own_price(e.maker_outcome, e.yes_price)
                rows.trades.append(
                    (
                        e.trade_id, e.market_id, e.kind, e.yes_price, q, e.taker_order_id, e.taker_user_id,
                        e.taker_outcome, e.taker_side, e.maker_order_id, e.maker_user_id, e.maker_outcome,
                        e.maker_side, at,
                    )
                )  # fmt: skip
                change = market(e.market_id)
                change.volume += q
                change.last_price = e.yes_price
                fill(e.taker_order_id, q, taker_price * q, e.taker_remaining == 0, at)
                fill(e.maker_order_id, q, maker_price * q, e.maker_remaining == 0, at)
                taker_account = cash_accounts[e.taker_user_id]
                maker_account = cash_accounts[e.maker_user_id]
                if e.escrow_delta == 0:  # one party pays the other
                    if e.taker_cash_delta < 0:
                        move(
                            taker_account,
                            maker_account,
                            -e.taker_cash_delta,
                            "trade",
                            "trade",
                            e.trade_id,
                            at,
                        )
                    else:
                        move(
                            maker_account,
                            taker_account,
                            -e.maker_cash_delta,
                            "trade",
                            "trade",
                            e.trade_id,
                            at,
                        )
                elif e.escrow_delta > 0:  # mint: both buyers pay into escrow
                    escrow = escrow_accounts[e.market_id]
                    move(
                        taker_account, escrow, -e.taker_cash_delta, "trade", "trade", e.trade_id, at
                    )
                    move(
                        maker_account, escrow, -e.maker_cash_delta, "trade", "trade", e.trade_id, at
                    )
                else:  # merge: escrow pays both sellers
                    escrow = escrow_accounts[e.market_id]
                    move(
                        escrow, taker_account, e.taker_cash_delta, "trade", "trade", e.trade_id, at
                    )
                    move(
                        escrow, maker_account, e.maker_cash_delta, "trade", "trade", e.trade_id, at
                    )
                taker_contracts = (
                    e.taker_yes_delta if e.taker_outcome == "yes" else e.taker_no_delta
                )
                maker_contracts = (
                    e.maker_yes_delta if e.maker_outcome == "yes" else e.maker_no_delta
                )
                position(e.taker_user_id, e.market_id).trade(
                    e.taker_outcome, taker_contracts, taker_price
                )
                position(e.maker_user_id, e.market_id).trade(
                    e.maker_outcome, maker_contracts, maker_price
                )
            elif kind is OrderAccepted:
                a: OrderAccepted = event  # type: ignore[assignment]
                new_orders[a.order_id] = [
                    a.order_id, a.user_id, a.market_id, a.outcome, a.side, a.type, a.time_in_force,
                    a.price if a.type == "limit" else None, a.quantity, 0, 0, "open", None, a.client_order_id, at, at,
                ]  # fmt: skip
                if a.user_id not in not_new:
                    rows.not_new.add(a.user_id)
            elif kind is OrderCanceled:
                c: OrderCanceled = event  # type: ignore[assignment]
                row = new_orders.get(c.order_id)
                if row is not None:
                    row[_STATUS] = "canceled"
                    row[_REASON] = c.reason
                    row[_UPDATED] = at
                else:
                    update = updates.get(c.order_id)
                    if update is None:
                        update = updates[c.order_id] = [0, 0, None, None, at]
                    update[2] = "canceled"
                    update[3] = c.reason
                    update[4] = at
            elif kind is WithdrawalAccepted:
                w: WithdrawalAccepted = event  # type: ignore[assignment]
                rows.withdrawals.append(
                    (w.withdrawal_id, w.user_id, w.idempotency_key, w.amount, "completed", at)
                )
                move(
                    cash_accounts[w.user_id], PLATFORM_BANK_ACCOUNT_ID, w.amount, "withdrawal", "withdrawal",
                    w.withdrawal_id, at,
                )  # fmt: skip
            elif kind is MarketStatusChanged:
                m: MarketStatusChanged = event  # type: ignore[assignment]
                market(m.market_id).status = m.status
            elif kind is Settlement:
                s: Settlement = event  # type: ignore[assignment]
                change = market(s.market_id)
                change.status = "resolved"
                change.outcome = s.outcome
                escrow = escrow_accounts[s.market_id]
                paid = {}
                for p in s.payouts:
                    cash = cash_accounts[p.user_id]
                    move(escrow, cash, p.gross, "payout", "market", s.market_id, at)
                    if p.fee:
                        move(
                            cash, PLATFORM_FEES_ACCOUNT_ID, p.fee, "fee", "market", s.market_id, at
                        )
                    paid[p.user_id] = p
                # Every holder's position closes, the losing side's (paid nothing) too.
                holders = {u for (u, m) in positions if m == s.market_id}
                holders.update(u for (u, m) in changed if m == s.market_id)
                for user_id in sorted(holders):
                    held = position(user_id, s.market_id)
                    if held.yes or held.no or user_id in paid:
                        p = paid.get(user_id)
                        held.settle(p.gross if p else 0, p.fee if p else 0)
            # OrderRejected and OrderDuplicate change nothing.
    rows.new_orders = list(new_orders.values())
    rows.order_updates = [(order_id, *update) for order_id, update in updates.items()]
    for account_id in [a for a, d in deltas.items() if d == 0]:
        del deltas[account_id]
    return rows
