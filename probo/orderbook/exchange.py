"""The matching core: every market's book and the accounts all markets share.

Pure and synchronous: commands in, events out, no IO and no `await`, so a
check-and-lock can never interleave with another. The pipeline of `place` is spelled
out in order: checks → risk hold (lock) → matching → risk release. `docs/MATCHING.md`
states every rule this module follows.
"""

from __future__ import annotations

from probo.orderbook.book import (
    ASK_KIND_MIN,
    BUY_NO,
    BUY_YES,
    KIND_IS_BUY,
    KIND_OUTCOME,
    KIND_SIDE,
    SELL_NO,
    SELL_YES,
    Book,
    RestingOrder,
    order_kind,
    yes_price_of,
)
from probo.orderbook.settlement import compute_settlement
from probo.orderbook.types import (
    CONTRACT_PAYOUT,
    QUANTITY_MAX,
    TICK_DEFAULT,
    CancelAll,
    CancelOrder,
    Event,
    MarketStatusChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDuplicate,
    OrderRejected,
    PlaceOrder,
    Settlement,
    TradeExecuted,
)

# TRADE_KIND[bid kind][ask kind - ASK_KIND_MIN], per the SPEC §6 table.
TRADE_KIND = (("transfer", "mint"), ("merge", "transfer"))
ESCROW_PER_CONTRACT = {"transfer": 0, "mint": CONTRACT_PAYOUT, "merge": -CONTRACT_PAYOUT}
OUTCOMES = ("yes", "no")
SIDES = ("buy", "sell")
TIMES_IN_FORCE = ("gtc", "ioc", "fok")


class InvalidMarketTransition(Exception):
    """A market status change that the lifecycle does not allow."""


class Position:
    """A user's contracts in one market, and how many of them open sells hold."""

    __slots__ = ("yes", "no", "yes_locked", "no_locked")

    def __init__(self) -> None:
        self.yes = 0
        self.no = 0
        self.yes_locked = 0
        self.no_locked = 0


class Market:
    __slots__ = ("market_id", "tick", "status", "book", "positions", "escrow")

    def __init__(self, market_id: int, tick: int) -> None:
        self.market_id = market_id
        self.tick = tick
        self.status = "open"
        self.book = Book(tick)
        self.positions: dict[int, Position] = {}
        self.escrow = 0


def _reject(command: PlaceOrder, code: str, message: str) -> list[Event]:
    return [
        OrderRejected(
            user_id=command.user_id,
            market_id=command.market_id,
            code=code,  # type: ignore[arg-type]
            message=message,
            client_order_id=command.client_order_id,
        )
    ]


class Exchange:
    def __init__(self) -> None:
        self.markets: dict[int, Market] = {}
        self._cash: dict[int, int] = {}
        self._locked: dict[int, int] = {}
        self._order_ids_by_client: dict[tuple[int, str], int] = {}
        self.last_order_id = 0
        self.last_trade_id = 0
        # For the conservation check: every paisa in cash or escrow came in as a credit.
        self._credited = 0
        self._fees = 0

    # --- money from outside trading --------------------------------------------------

    def credit(self, user_id: int, amount: int) -> None:
        assert amount > 0, amount
        self._cash[user_id] = self._cash.get(user_id, 0) + amount
        self._locked.setdefault(user_id, 0)
        self._credited += amount

    def create_user(self, user_id: int) -> None:
        self._cash.setdefault(user_id, 0)
        self._locked.setdefault(user_id, 0)

    # --- reads -----------------------------------------------------------------------

    def cash(self, user_id: int) -> int:
        return self._cash.get(user_id, 0)

    def locked_cash(self, user_id: int) -> int:
        return self._locked.get(user_id, 0)

    def available_cash(self, user_id: int) -> int:
        return self._cash.get(user_id, 0) - self._locked.get(user_id, 0)

    def position(self, user_id: int, market_id: int) -> tuple[int, int, int, int]:
        position = self.markets[market_id].positions.get(user_id)
        if position is None:
            return (0, 0, 0, 0)
        return (position.yes, position.no, position.yes_locked, position.no_locked)

    def escrow(self, market_id: int) -> int:
        return self.markets[market_id].escrow

    def depth(self, market_id: int, levels: int | None = None) -> dict[str, list[tuple[int, int]]]:
        return self.markets[market_id].book.depth(levels)

    def open_orders(self, market_id: int) -> list[RestingOrder]:
        """Every resting order: bids, then asks, each side in priority order."""
        book = self.markets[market_id].book
        return [*book.bids(), *book.asks()]

    # --- market lifecycle --------------------------------------------------------------

    def open_market(self, market_id: int, tick: int = TICK_DEFAULT) -> None:
        assert market_id not in self.markets, market_id
        assert 1 <= tick <= 100 and CONTRACT_PAYOUT % tick == 0, tick
        self.markets[market_id] = Market(market_id, tick)

    def _transition(self, market_id: int, allowed_from: tuple[str, ...], status: str) -> Market:
        market = self.markets.get(market_id)
        if market is None:
            raise InvalidMarketTransition(f"unknown market {market_id}")
        if market.status not in allowed_from:
            raise InvalidMarketTransition(f"market {market_id} is {market.status}, cannot become {status}")
        market.status = status
        return market

    def pause_market(self, market_id: int) -> list[Event]:
        self._transition(market_id, ("open",), "paused")
        return [MarketStatusChanged(market_id=market_id, status="paused")]

    def resume_market(self, market_id: int) -> list[Event]:
        self._transition(market_id, ("paused",), "open")
        return [MarketStatusChanged(market_id=market_id, status="open")]

    def close_market(self, market_id: int) -> list[Event]:
        """Cancel every open order (by order id), release its lock, stop the market."""
        market = self._transition(market_id, ("open", "paused"), "closed")
        events: list[Event] = []
        for order in sorted(market.book.orders.values(), key=lambda o: o.order_id):
            self._cancel_resting(market, order, "market_closed", events)
        events.append(MarketStatusChanged(market_id=market_id, status="closed"))
        return events

    def settle_market(self, market_id: int, outcome: str, fee_bps: int) -> Settlement:
        """Pay every holder out of the escrow; positions and escrow end at zero."""
        market = self._transition(market_id, ("closed",), "resolved")
        holdings = [(user_id, p.yes, p.no) for user_id, p in market.positions.items() if p.yes or p.no]
        settlement = compute_settlement(market_id, holdings, outcome, fee_bps)
        assert settlement.escrow_released == market.escrow, (settlement.escrow_released, market.escrow)
        for payout in settlement.payouts:
            self._cash[payout.user_id] += payout.net
        self._fees += settlement.fees
        market.escrow = 0
        market.positions.clear()
        return settlement

    # --- orders ------------------------------------------------------------------------

    def place(self, command: PlaceOrder) -> list[Event]:
        user_id = command.user_id
        client_order_id = command.client_order_id
        if client_order_id is not None:
            original = self._order_ids_by_client.get((user_id, client_order_id))
            if original is not None:
                return [
                    OrderDuplicate(
                        user_id=user_id, market_id=command.market_id, client_order_id=client_order_id, order_id=original
                    )
                ]
        market = self.markets.get(command.market_id)
        if market is None:
            return _reject(command, "not_found", "unknown market")
        if market.status != "open":
            return _reject(command, "market_not_open", f"the market is {market.status}")

        # Checks.
        if command.outcome not in OUTCOMES or command.side not in SIDES:
            return _reject(command, "validation_error", "outcome must be yes or no, side buy or sell")
        kind = order_kind(command.outcome, command.side)
        is_buy = KIND_IS_BUY[kind]
        tick = market.tick
        is_market_order = command.type == "market"
        if is_market_order:
            if command.price is not None or command.time_in_force != "ioc":
                return _reject(command, "validation_error", "a market order has no price and is ioc")
            own_price = CONTRACT_PAYOUT - tick if is_buy else tick
        elif command.type == "limit":
            if command.price is None or command.time_in_force not in TIMES_IN_FORCE:
                return _reject(command, "validation_error", "a limit order needs a price and gtc, ioc or fok")
            own_price = command.price
            if own_price % tick or not tick <= own_price <= CONTRACT_PAYOUT - tick:
                return _reject(command, "invalid_price", f"price must be a multiple of {tick} in [{tick}, {CONTRACT_PAYOUT - tick}]")
        else:
            return _reject(command, "validation_error", "type must be limit or market")
        quantity = command.quantity
        if not 1 <= quantity <= QUANTITY_MAX:
            return _reject(command, "invalid_quantity", f"quantity must be between 1 and {QUANTITY_MAX}")

        # Risk hold.
        available = self._cash.get(user_id, 0) - self._locked.get(user_id, 0)
        position = market.positions.get(user_id)
        working = quantity
        locked_cash = locked_contracts = 0
        if is_buy:
            if is_market_order:
                working, locked_cash, liquidity = self._affordable(market.book, kind, user_id, quantity, available)
                if working == 0 and liquidity:
                    return _reject(command, "insufficient_funds", "available funds do not buy one contract")
            else:
                locked_cash = own_price * quantity
                if locked_cash > available:
                    return _reject(command, "insufficient_funds", f"needs {locked_cash}, {available} available")
            self._locked[user_id] = self._locked.get(user_id, 0) + locked_cash
        else:
            if position is None:
                held = 0
            elif kind == SELL_YES:
                held = position.yes - position.yes_locked
            else:
                held = position.no - position.no_locked
            if held < quantity:
                return _reject(command, "insufficient_position", f"sells {quantity}, {held} contracts available")
            if kind == SELL_YES:
                position.yes_locked += quantity  # type: ignore[union-attr]
            else:
                position.no_locked += quantity  # type: ignore[union-attr]
            locked_contracts = quantity

        order_id = self.last_order_id + 1
        self.last_order_id = order_id
        if client_order_id is not None:
            self._order_ids_by_client[(user_id, client_order_id)] = order_id
        events: list[Event] = [
            OrderAccepted(
                order_id=order_id,
                user_id=user_id,
                market_id=market.market_id,
                outcome=command.outcome,
                side=command.side,
                type=command.type,
                time_in_force=command.time_in_force,
                price=own_price,
                quantity=quantity,
                client_order_id=client_order_id,
                locked_cash=locked_cash,
                locked_contracts=locked_contracts,
            )
        ]
        yes_limit = yes_price_of(kind, own_price)
        time_in_force = command.time_in_force
        # A market buy locked exactly the cost of what it will buy; its fills release
        # their cost. A limit buy releases its own price per contract filled.
        lock_unit = None if is_market_order else own_price

        # Matching.
        if time_in_force == "fok" and self._fillable(market.book, kind, user_id, yes_limit, quantity) < quantity:
            remaining = working
        else:
            remaining = self._match(market, order_id, user_id, kind, yes_limit, lock_unit, working, events)

        # Risk release, or rest.
        if remaining and time_in_force == "gtc":
            market.book.add(RestingOrder(order_id, user_id, kind, yes_limit, remaining))
        elif remaining or working < quantity:
            reason = "fok_unfilled" if time_in_force == "fok" else "ioc_remainder"
            released_cash, released_contracts = self._release(user_id, kind, market, own_price, lock_unit, remaining)
            if is_market_order and is_buy:
                released_cash = locked_cash - self._spent_lock(events)
                self._locked[user_id] -= released_cash
            events.append(
                OrderCanceled(
                    order_id=order_id,
                    user_id=user_id,
                    market_id=market.market_id,
                    reason=reason,
                    canceled_quantity=remaining + quantity - working,
                    released_cash=released_cash,
                    released_contracts=released_contracts,
                )
            )
        return events

    def cancel(self, command: CancelOrder) -> list[Event]:
        market = self.markets.get(command.market_id)
        order = market.book.orders.get(command.order_id) if market is not None else None
        if order is None or order.user_id != command.user_id:
            issued = 0 < command.order_id <= self.last_order_id
            code = "order_not_open" if order is None and issued and market is not None else "not_found"
            return [
                OrderRejected(
                    user_id=command.user_id,
                    market_id=command.market_id,
                    code=code,  # type: ignore[arg-type]
                    message="the order is not open" if code == "order_not_open" else "order not found",
                    order_id=command.order_id,
                )
            ]
        events: list[Event] = []
        self._cancel_resting(market, order, "user", events)  # type: ignore[arg-type]
        return events

    def cancel_all(self, command: CancelAll) -> list[Event]:
        market = self.markets.get(command.market_id)
        if market is None:
            return [
                OrderRejected(user_id=command.user_id, market_id=command.market_id, code="not_found", message="unknown market")
            ]
        mine = sorted(
            (o for o in market.book.orders.values() if o.user_id == command.user_id), key=lambda o: o.order_id
        )
        events: list[Event] = []
        for order in mine:
            self._cancel_resting(market, order, "user", events)
        return events

    # --- the pipeline's parts ----------------------------------------------------------

    def _affordable(self, book: Book, kind: int, user_id: int, quantity: int, available: int) -> tuple[int, int, bool]:
        """A market buy's (quantity, exact cost) within `available`, walking other users'
        resting orders in priority order; and whether any such liquidity exists."""
        makers = book.asks() if kind == BUY_YES else book.bids()
        got = cost = 0
        liquidity = False
        for maker in makers:
            if maker.user_id == user_id:
                continue  # met by the order, it is canceled, not bought
            liquidity = True
            unit = maker.price if kind == BUY_YES else CONTRACT_PAYOUT - maker.price
            take = min(maker.remaining, quantity - got, (available - cost) // unit)
            if take <= 0:
                break  # later orders cost the same or more
            got += take
            cost += take * unit
            if got == quantity:
                break
        return got, cost, liquidity

    @staticmethod
    def _fillable(book: Book, kind: int, user_id: int, yes_limit: int, quantity: int) -> int:
        """Other users' quantity a fok could take at once, counted up to `quantity`."""
        total = 0
        if kind < ASK_KIND_MIN:
            for maker in book.asks():
                if maker.price > yes_limit:
                    break
                if maker.user_id != user_id:
                    total += maker.remaining
                    if total >= quantity:
                        break
        else:
            for maker in book.bids():
                if maker.price < yes_limit:
                    break
                if maker.user_id != user_id:
                    total += maker.remaining
                    if total >= quantity:
                        break
        return total

    def _match(
        self,
        market: Market,
        order_id: int,
        user_id: int,
        kind: int,
        yes_limit: int,
        lock_unit: int | None,
        remaining: int,
        events: list[Event],
    ) -> int:
        """Trade `remaining` against the opposite side; returns what is left."""
        book = market.book
        tick = book.tick
        taker_is_bid = kind < ASK_KIND_MIN
        heads = book.ask_head if taker_is_bid else book.bid_head
        limit_level = yes_limit // tick
        while remaining:
            if taker_is_bid:
                mask = book.ask_mask
                if not mask:
                    break
                level = (mask & -mask).bit_length() - 1
                if level > limit_level:
                    break
            else:
                mask = book.bid_mask
                if not mask:
                    break
                level = mask.bit_length() - 1
                if level < limit_level:
                    break
            maker = heads[level]
            while maker is not None and remaining:
                following = maker.next
                if maker.user_id == user_id:
                    self._cancel_resting(market, maker, "self_trade", events)
                else:
                    quantity = remaining if remaining < maker.remaining else maker.remaining
                    remaining -= quantity
                    self._trade(market, order_id, user_id, kind, lock_unit, maker, quantity, remaining, events)
                    if quantity == maker.remaining:
                        book.remove(maker)
                        maker.remaining = 0
                    else:
                        book.reduce(maker, quantity)
                maker = following
        return remaining

    def _trade(
        self,
        market: Market,
        taker_order_id: int,
        taker_user_id: int,
        taker_kind: int,
        taker_lock_unit: int | None,
        maker: RestingOrder,
        quantity: int,
        taker_remaining: int,
        events: list[Event],
    ) -> None:
        yes_price = maker.price
        maker_kind = maker.kind
        if taker_kind < ASK_KIND_MIN:
            kind = TRADE_KIND[taker_kind][maker_kind - ASK_KIND_MIN]
        else:
            kind = TRADE_KIND[maker_kind][taker_kind - ASK_KIND_MIN]
        positions = market.positions
        taker_position = positions.get(taker_user_id)
        if taker_position is None:
            taker_position = positions[taker_user_id] = Position()
        maker_position = positions.get(maker.user_id)
        if maker_position is None:
            maker_position = positions[maker.user_id] = Position()
        taker_cash, taker_yes, taker_no = self._fill(
            taker_user_id, taker_kind, quantity, yes_price, taker_lock_unit, taker_position
        )
        maker_cash, maker_yes, maker_no = self._fill(
            maker.user_id, maker_kind, quantity, yes_price, maker.own_price, maker_position
        )
        escrow_delta = ESCROW_PER_CONTRACT[kind] * quantity
        market.escrow += escrow_delta
        self.last_trade_id += 1
        events.append(
            TradeExecuted(
                trade_id=self.last_trade_id,
                market_id=market.market_id,
                kind=kind,  # type: ignore[arg-type]
                yes_price=yes_price,
                quantity=quantity,
                taker_order_id=taker_order_id,
                taker_user_id=taker_user_id,
                taker_outcome=KIND_OUTCOME[taker_kind],  # type: ignore[arg-type]
                taker_side=KIND_SIDE[taker_kind],  # type: ignore[arg-type]
                maker_order_id=maker.order_id,
                maker_user_id=maker.user_id,
                maker_outcome=KIND_OUTCOME[maker_kind],  # type: ignore[arg-type]
                maker_side=KIND_SIDE[maker_kind],  # type: ignore[arg-type]
                taker_cash_delta=taker_cash,
                taker_yes_delta=taker_yes,
                taker_no_delta=taker_no,
                maker_cash_delta=maker_cash,
                maker_yes_delta=maker_yes,
                maker_no_delta=maker_no,
                escrow_delta=escrow_delta,
                taker_remaining=taker_remaining,
                maker_remaining=maker.remaining - quantity,
            )
        )

    def _fill(
        self, user_id: int, kind: int, quantity: int, yes_price: int, lock_unit: int | None, position: Position
    ) -> tuple[int, int, int]:
        """Apply one party's side of a trade; returns its (cash, YES, NO) deltas.

        A buy pays the trade price and releases `lock_unit` per contract (its own limit
        price; None for a market buy, which locked exactly what it pays)."""
        if kind == BUY_YES:
            cost = yes_price * quantity
            self._cash[user_id] -= cost
            self._locked[user_id] -= cost if lock_unit is None else lock_unit * quantity
            position.yes += quantity
            return -cost, quantity, 0
        if kind == BUY_NO:
            cost = (CONTRACT_PAYOUT - yes_price) * quantity
            self._cash[user_id] -= cost
            self._locked[user_id] -= cost if lock_unit is None else lock_unit * quantity
            position.no += quantity
            return -cost, 0, quantity
        if kind == SELL_YES:
            proceeds = yes_price * quantity
            self._cash[user_id] = self._cash.get(user_id, 0) + proceeds
            self._locked.setdefault(user_id, 0)
            position.yes -= quantity
            position.yes_locked -= quantity
            return proceeds, -quantity, 0
        proceeds = (CONTRACT_PAYOUT - yes_price) * quantity
        self._cash[user_id] = self._cash.get(user_id, 0) + proceeds
        self._locked.setdefault(user_id, 0)
        position.no -= quantity
        position.no_locked -= quantity
        return proceeds, 0, -quantity

    def _release(
        self, user_id: int, kind: int, market: Market, own_price: int, lock_unit: int | None, remaining: int
    ) -> tuple[int, int]:
        """Give back what `remaining` unfilled contracts of an order hold: (cash, contracts)."""
        if KIND_IS_BUY[kind]:
            if lock_unit is None:
                return 0, 0  # a market buy: settled by the caller from what it spent
            released = own_price * remaining
            self._locked[user_id] -= released
            return released, 0
        position = market.positions[user_id]
        if kind == SELL_YES:
            position.yes_locked -= remaining
        else:
            position.no_locked -= remaining
        return 0, remaining

    @staticmethod
    def _spent_lock(events: list[Event]) -> int:
        """What a market buy's own fills paid, from its trade events."""
        spent = 0
        for event in events:
            if type(event) is TradeExecuted:
                spent -= event.taker_cash_delta
        return spent

    def _cancel_resting(self, market: Market, order: RestingOrder, reason: str, events: list[Event]) -> None:
        remaining = order.remaining
        market.book.remove(order)
        released_cash, released_contracts = self._release(
            order.user_id, order.kind, market, order.own_price, order.own_price, remaining
        )
        events.append(
            OrderCanceled(
                order_id=order.order_id,
                user_id=order.user_id,
                market_id=market.market_id,
                reason=reason,  # type: ignore[arg-type]
                canceled_quantity=remaining,
                released_cash=released_cash,
                released_contracts=released_contracts,
            )
        )

    # --- invariants --------------------------------------------------------------------

    def validate(self) -> None:
        """Check every invariant of books, locks and money; AssertionError names a breach."""
        locked_by_user: dict[int, int] = {}
        escrow_total = 0
        for market in self.markets.values():
            book = market.book
            book.validate()
            contracts_locked: dict[tuple[int, int], int] = {}
            for order in book.orders.values():
                if KIND_IS_BUY[order.kind]:
                    locked_by_user[order.user_id] = locked_by_user.get(order.user_id, 0) + order.own_price * order.remaining
                else:
                    key = (order.user_id, order.kind)
                    contracts_locked[key] = contracts_locked.get(key, 0) + order.remaining
            yes_total = no_total = 0
            for user_id, position in market.positions.items():
                assert position.yes_locked == contracts_locked.get((user_id, SELL_YES), 0), (
                    f"market {market.market_id} user {user_id}: YES locked {position.yes_locked} "
                    f"!= open sells {contracts_locked.get((user_id, SELL_YES), 0)}"
                )
                assert position.no_locked == contracts_locked.get((user_id, SELL_NO), 0), (
                    f"market {market.market_id} user {user_id}: NO locked {position.no_locked} "
                    f"!= open sells {contracts_locked.get((user_id, SELL_NO), 0)}"
                )
                assert 0 <= position.yes_locked <= position.yes, f"user {user_id} YES {position.yes}/{position.yes_locked}"
                assert 0 <= position.no_locked <= position.no, f"user {user_id} NO {position.no}/{position.no_locked}"
                yes_total += position.yes
                no_total += position.no
            sellers = {user_id for user_id, _ in contracts_locked}
            assert sellers <= set(market.positions), f"market {market.market_id}: sells without positions"
            assert yes_total == no_total, f"market {market.market_id}: YES {yes_total} != NO {no_total} outstanding"
            assert market.escrow == CONTRACT_PAYOUT * yes_total, (
                f"market {market.market_id}: escrow {market.escrow} != 1000 x {yes_total} YES outstanding"
            )
            if market.status in ("closed", "resolved"):
                assert not book.orders, f"market {market.market_id} is {market.status} with open orders"
            escrow_total += market.escrow
        for user_id, cash in self._cash.items():
            locked = self._locked.get(user_id, 0)
            assert locked == locked_by_user.get(user_id, 0), (
                f"user {user_id}: locked {locked} != open buys {locked_by_user.get(user_id, 0)}"
            )
            assert 0 <= locked <= cash, f"user {user_id}: cash {cash}, locked {locked}"
        assert set(locked_by_user) <= set(self._cash), "open buys of a user with no account"
        total = sum(self._cash.values()) + escrow_total + self._fees
        assert total == self._credited, f"money not conserved: {total} held vs {self._credited} credited"
