"""The matching core: every market's book and the accounts all markets share.

Pure and synchronous: commands in, events out, no IO and no `await`, so a
check-and-lock can never interleave with another. The pipeline of `place` is spelled
out in order: checks → risk hold (lock) → matching → risk release. `docs/MATCHING.md`
states every rule this module follows.
"""

from __future__ import annotations

from typing import Final

from probo.orderbook.accounts import Account, Position
from probo.orderbook.book import (
    ASK_KIND_MIN,
    BUY_NO,
    BUY_YES,
    KIND_IS_BUY,
    KIND_OUTCOME,
    KIND_SIDE,
    PAYOUT,
    SELL_NO,
    SELL_YES,
    Book,
    RestingOrder,
    live_orders,
    own_quantity_by_level,
)
from probo.orderbook.settlement import BASIS_POINTS, YES_VALUE, compute_settlement
from probo.orderbook.types import (
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
    TradeKind,
)

# A named bound: it keeps every per-user walk (cancel-all, fok and market-buy
# liquidity) short, whatever the rest of the book holds.
OPEN_ORDERS_PER_USER_MAX: Final = 1000
ORDER_QUANTITY_MAX: Final = QUANTITY_MAX
TIMES_IN_FORCE: Final = ("gtc", "ioc", "fok")


class InvalidMarketTransition(Exception):
    """A market status change that the lifecycle does not allow."""


# Per order kind: does it price in YES terms, does it pay (buy), and which contract
# count one filled contract moves (+1 for a buy, -1 for a sell).
KIND_IN_YES_TERMS: Final = (True, False, True, False)
KIND_YES_UNIT: Final = (1, 0, -1, 0)
KIND_NO_UNIT: Final = (0, -1, 0, 1)


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
        self._accounts: dict[int, Account] = {}
        self._order_ids_by_client: dict[tuple[int, str], int] = {}
        self.last_order_id = 0
        self.last_trade_id = 0
        # For the conservation check: every paisa in cash or escrow came in as a credit.
        self._credited = 0
        self._fees = 0

    # --- money from outside trading --------------------------------------------------

    def _account(self, user_id: int) -> Account:
        account = self._accounts.get(user_id)
        if account is None:
            account = self._accounts[user_id] = Account()
        return account

    def credit(self, user_id: int, amount: int) -> None:
        if amount <= 0:
            raise ValueError(f"a credit must be positive, not {amount}")
        self._account(user_id).cash += amount
        self._credited += amount

    def create_user(self, user_id: int) -> None:
        self._account(user_id)

    def withdraw(self, user_id: int, amount: int) -> bool:
        """Take `amount` out of the user's available cash; False if it is not there."""
        account = self._accounts.get(user_id)
        if amount <= 0 or account is None or account.cash - account.locked < amount:
            return False
        account.cash -= amount
        self._credited -= amount
        return True

    # --- recovery: state rebuilt from Postgres, without matching -----------------------

    def restore_market(self, market_id: int, tick: int, status: str, escrow: int) -> None:
        self.open_market(market_id, tick)
        market = self.markets[market_id]
        market.status = status
        market.escrow = escrow
        self._credited += escrow

    def restore_position(self, user_id: int, market_id: int, yes: int, no: int) -> None:
        self._account(user_id)
        position = self.markets[market_id].positions.get(user_id)
        if position is None:
            position = self.markets[market_id].positions[user_id] = Position()
        position.yes = yes
        position.no = no

    def restore_order(
        self,
        order_id: int,
        user_id: int,
        market_id: int,
        outcome: str,
        side: str,
        own_price: int,
        remaining: int,
    ) -> None:
        """Put an open order back on its book with its lock. Call in order id order:
        that is each level's time priority."""
        market = self.markets[market_id]
        if outcome == "yes":
            kind = BUY_YES if side == "buy" else SELL_YES
        else:
            kind = BUY_NO if side == "buy" else SELL_NO
        account = self._account(user_id)
        position = market.positions.get(user_id)
        if position is None:
            position = market.positions[user_id] = Position()
        if KIND_IS_BUY[kind]:
            account.locked += own_price * remaining
        elif kind == SELL_YES:
            position.yes_locked += remaining
        else:
            position.no_locked += remaining
        yes_price = own_price if KIND_IN_YES_TERMS[kind] else PAYOUT - own_price
        market.book.add(
            RestingOrder(order_id, user_id, kind, yes_price, remaining, account, position)
        )
        if order_id > self.last_order_id:
            self.last_order_id = order_id

    def restore_client_order_id(self, user_id: int, client_order_id: str, order_id: int) -> None:
        self._order_ids_by_client[(user_id, client_order_id)] = order_id

    def restore_ids(self, last_order_id: int, last_trade_id: int) -> None:
        self.last_order_id = max(self.last_order_id, last_order_id)
        self.last_trade_id = max(self.last_trade_id, last_trade_id)

    def cash_by_user(self) -> dict[int, int]:
        return {user_id: account.cash for user_id, account in self._accounts.items()}

    def positions_by_market(self) -> dict[tuple[int, int], tuple[int, int]]:
        return {
            (user_id, market_id): (p.yes, p.no)
            for market_id, market in self.markets.items()
            for user_id, p in market.positions.items()
            if p.yes or p.no
        }

    def order_market(self, order_id: int, user_id: int) -> int | None:
        """The market of the user's open order `order_id`, or None."""
        for market in self.markets.values():
            order = market.book.orders.get(order_id)
            if order is not None:
                return market.market_id if order.user_id == user_id else None
        return None

    # --- reads -----------------------------------------------------------------------

    def cash(self, user_id: int) -> int:
        account = self._accounts.get(user_id)
        return account.cash if account is not None else 0

    def locked_cash(self, user_id: int) -> int:
        account = self._accounts.get(user_id)
        return account.locked if account is not None else 0

    def available_cash(self, user_id: int) -> int:
        account = self._accounts.get(user_id)
        return account.cash - account.locked if account is not None else 0

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
        if market_id in self.markets:
            raise ValueError(f"market {market_id} is already open")
        if not (1 <= tick <= 100 and PAYOUT % tick == 0):
            raise ValueError(f"tick {tick} must divide 1000 and be between 1 and 100")
        self.markets[market_id] = Market(market_id, tick)

    def _transition(self, market_id: int, allowed_from: tuple[str, ...], status: str) -> Market:
        market = self.markets.get(market_id)
        if market is None:
            raise InvalidMarketTransition(f"unknown market {market_id}")
        if market.status not in allowed_from:
            raise InvalidMarketTransition(
                f"market {market_id} is {market.status}, cannot become {status}"
            )
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
        if outcome not in YES_VALUE or not 0 <= fee_bps <= BASIS_POINTS:
            raise ValueError(f"cannot settle with outcome {outcome!r} and fee {fee_bps} bps")
        market = self.markets.get(market_id)
        if market is None or market.status != "closed":
            raise InvalidMarketTransition(
                f"market {market_id} is not closed; it cannot be resolved"
            )
        holdings = [
            (user_id, p.yes, p.no) for user_id, p in market.positions.items() if p.yes or p.no
        ]
        settlement = compute_settlement(market_id, holdings, outcome, fee_bps)
        # Checked before anything changes: a market whose escrow does not back its
        # contracts must stay closed for an operator, not half-resolved.
        assert settlement.escrow_released == market.escrow, (
            settlement.escrow_released,
            market.escrow,
        )
        market.status = "resolved"
        for payout in settlement.payouts:
            self._accounts[payout.user_id].cash += payout.net
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
                        user_id=user_id,
                        market_id=command.market_id,
                        client_order_id=client_order_id,
                        order_id=original,
                    )
                ]
        market = self.markets.get(command.market_id)
        if market is None:
            return _reject(command, "not_found", "unknown market")
        if market.status != "open":
            return _reject(command, "market_not_open", f"the market is {market.status}")

        # Checks.
        outcome, side = command.outcome, command.side
        if outcome == "yes":
            kind = BUY_YES if side == "buy" else SELL_YES if side == "sell" else -1
        elif outcome == "no":
            kind = BUY_NO if side == "buy" else SELL_NO if side == "sell" else -1
        else:
            kind = -1
        if kind < 0:
            return _reject(
                command, "validation_error", "outcome must be yes or no, side buy or sell"
            )
        is_buy = KIND_IS_BUY[kind]
        tick = market.tick
        order_type = command.type
        time_in_force = command.time_in_force
        if order_type == "limit":
            own_price = command.price
            if own_price is None or time_in_force not in TIMES_IN_FORCE:
                return _reject(
                    command, "validation_error", "a limit order needs a price and gtc, ioc or fok"
                )
            if own_price % tick or not tick <= own_price <= PAYOUT - tick:
                return _reject(
                    command,
                    "invalid_price",
                    f"price must be a multiple of {tick} in [{tick}, {PAYOUT - tick}]",
                )
        elif order_type == "market":
            if command.price is not None or time_in_force != "ioc":
                return _reject(
                    command, "validation_error", "a market order has no price and is ioc"
                )
            own_price = PAYOUT - tick if is_buy else tick
        else:
            return _reject(command, "validation_error", "type must be limit or market")
        quantity = command.quantity
        if not 1 <= quantity <= ORDER_QUANTITY_MAX:
            return _reject(
                command, "invalid_quantity", f"quantity must be between 1 and {QUANTITY_MAX}"
            )

        positions = market.positions
        position = positions.get(user_id)
        if (
            time_in_force == "gtc"
            and position is not None
            and len(position.orders) >= OPEN_ORDERS_PER_USER_MAX
            and len(live_orders(position)) >= OPEN_ORDERS_PER_USER_MAX
        ):
            return _reject(
                command,
                "too_many_open_orders",
                f"at most {OPEN_ORDERS_PER_USER_MAX} open orders per market",
            )

        # Risk hold. A refused order leaves no trace, not even an empty account.
        account = self._accounts.get(user_id)
        working = quantity
        locked_cash = locked_contracts = 0
        is_market_order = order_type == "market"
        if is_buy:
            available = account.cash - account.locked if account is not None else 0
            if is_market_order:
                working, locked_cash, liquidity = self._affordable(
                    market.book, kind, position, quantity, available
                )
                if working == 0 and liquidity:
                    return _reject(
                        command, "insufficient_funds", "available funds do not buy one contract"
                    )
            else:
                locked_cash = own_price * quantity
                if locked_cash > available:
                    return _reject(
                        command, "insufficient_funds", f"needs {locked_cash}, {available} available"
                    )
            if account is None:
                account = self._accounts[user_id] = Account()
            account.locked += locked_cash
            if position is None:
                position = positions[user_id] = Position()
        else:
            if position is None or account is None:
                return _reject(
                    command, "insufficient_position", f"sells {quantity}, 0 contracts available"
                )
            if kind == SELL_YES:
                held = position.yes - position.yes_locked
                if held < quantity:
                    return _reject(
                        command,
                        "insufficient_position",
                        f"sells {quantity}, {held} contracts available",
                    )
                position.yes_locked += quantity
            else:
                held = position.no - position.no_locked
                if held < quantity:
                    return _reject(
                        command,
                        "insufficient_position",
                        f"sells {quantity}, {held} contracts available",
                    )
                position.no_locked += quantity
            locked_contracts = quantity

        order_id = self.last_order_id + 1
        self.last_order_id = order_id
        if client_order_id is not None:
            self._order_ids_by_client[(user_id, client_order_id)] = order_id
        market_id = market.market_id
        events: list[Event] = [
            OrderAccepted(
                order_id,
                user_id,
                market_id,
                command.outcome,
                command.side,
                order_type,
                time_in_force,
                own_price,
                quantity,
                client_order_id,
                locked_cash,
                locked_contracts,
            )
        ]
        yes_limit = own_price if KIND_IN_YES_TERMS[kind] else PAYOUT - own_price

        # Matching: only when the opposite side's best price is within the limit.
        book = market.book
        if kind < ASK_KIND_MIN:
            mask = book.ask_mask
            crosses = mask != 0 and (mask & -mask).bit_length() - 1 <= yes_limit // tick
        else:
            mask = book.bid_mask
            crosses = mask != 0 and mask.bit_length() - 1 >= yes_limit // tick
        if not crosses:
            remaining = working
        elif (
            time_in_force == "fok"
            and self._fillable(book, kind, position, yes_limit, quantity) < quantity
        ):
            remaining = working
        else:
            remaining = self._match(
                market,
                order_id,
                user_id,
                kind,
                yes_limit,
                working,
                quantity - working,
                account,
                position,
                events,
            )
            filled = working - remaining
            if filled and is_buy:
                # A limit buy gives back its own price per contract filled (so a better
                # price returns the difference); a market buy locked exactly its cost.
                if is_market_order:
                    account.locked -= locked_cash
                    locked_cash = 0
                else:
                    account.locked -= own_price * filled

        # Rest, or release what the remainder holds.
        if remaining and time_in_force == "gtc":
            book.add(RestingOrder(order_id, user_id, kind, yes_limit, remaining, account, position))
        elif remaining or working < quantity:
            released_cash = released_contracts = 0
            if is_buy:
                released_cash = locked_cash if is_market_order else own_price * remaining
                account.locked -= released_cash
            elif kind == SELL_YES:
                position.yes_locked -= remaining
                released_contracts = remaining
            else:
                position.no_locked -= remaining
                released_contracts = remaining
            events.append(
                OrderCanceled(
                    order_id,
                    user_id,
                    market_id,
                    "fok_unfilled" if time_in_force == "fok" else "ioc_remainder",
                    remaining + quantity - working,
                    released_cash,
                    released_contracts,
                )
            )
        return events

    def cancel(self, command: CancelOrder) -> list[Event]:
        market = self.markets.get(command.market_id)
        order = market.book.orders.get(command.order_id) if market is not None else None
        if order is None or order.user_id != command.user_id:
            issued = 0 < command.order_id <= self.last_order_id
            open_elsewhere = order is None and any(
                command.order_id in m.book.orders for m in self.markets.values()
            )
            # Only the owner may learn an order's state: anything open is not_found to
            # others, and to its owner under another market's id.
            code = (
                "order_not_open"
                if order is None and issued and market is not None and not open_elsewhere
                else "not_found"
            )
            return [
                OrderRejected(
                    user_id=command.user_id,
                    market_id=command.market_id,
                    code=code,  # type: ignore[arg-type]
                    message="the order is not open"
                    if code == "order_not_open"
                    else "order not found",
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
                OrderRejected(
                    user_id=command.user_id,
                    market_id=command.market_id,
                    code="not_found",
                    message="unknown market",
                )
            ]
        position = market.positions.get(command.user_id)
        mine = live_orders(position) if position is not None else []  # by order id
        events: list[Event] = []
        for order in mine:
            self._cancel_resting(market, order, "user", events)
        return events

    # --- the pipeline's parts ----------------------------------------------------------

    @staticmethod
    def _affordable(
        book: Book, kind: int, position: Position | None, quantity: int, available: int
    ) -> tuple[int, int, bool]:
        """A market buy's (quantity, exact cost) within `available`, taking other users'
        resting quantity level by level, best first; and whether any such liquidity exists."""
        buys_yes = kind == BUY_YES
        own = own_quantity_by_level(position, buys_yes, book.tick)
        levels = book.ask_quantity if buys_yes else book.bid_quantity
        mask = book.ask_mask if buys_yes else book.bid_mask
        got = cost = 0
        liquidity = False
        while mask:
            if buys_yes:
                level = (mask & -mask).bit_length() - 1
                mask &= mask - 1
            else:
                level = mask.bit_length() - 1
                mask &= ~(1 << level)
            others = levels[level] - own.get(level, 0)
            if others <= 0:
                continue  # only the user's own orders: canceled when met, never bought
            liquidity = True
            price = level * book.tick
            unit = price if buys_yes else PAYOUT - price
            take = min(others, quantity - got, (available - cost) // unit)
            if take <= 0:
                break  # later levels cost more
            got += take
            cost += take * unit
            if got == quantity:
                break
        return got, cost, liquidity

    @staticmethod
    def _fillable(
        book: Book, kind: int, position: Position | None, yes_limit: int, quantity: int
    ) -> int:
        """Other users' quantity a fok could take at once, counted up to `quantity`:
        level totals within the limit, less the user's own orders there."""
        taker_is_bid = kind < ASK_KIND_MIN
        own = own_quantity_by_level(position, taker_is_bid, book.tick)
        limit_level = yes_limit // book.tick
        total = 0
        if taker_is_bid:
            mask = book.ask_mask
            while mask and total < quantity:
                level = (mask & -mask).bit_length() - 1
                if level > limit_level:
                    break
                total += book.ask_quantity[level] - own.get(level, 0)
                mask &= mask - 1
        else:
            mask = book.bid_mask
            while mask and total < quantity:
                level = mask.bit_length() - 1
                if level < limit_level:
                    break
                total += book.bid_quantity[level] - own.get(level, 0)
                mask &= ~(1 << level)
        return total

    def _match(
        self,
        market: Market,
        order_id: int,
        user_id: int,
        kind: int,
        yes_limit: int,
        remaining: int,
        unaffordable: int,
        account: Account,
        position: Position,
        events: list[Event],
    ) -> int:
        """Trade `remaining` against the opposite side; returns what is left.

        Trade events report the taker's remainder against the quantity it asked for:
        `unaffordable` is what a market buy could not pay for and will not work.

        The taker's own cash and contracts move once at the end (its buy lock is
        released by the caller); each maker's move at its fill. Inlined for speed:
        this loop is most of the engine's time.
        """
        book = market.book
        tick = book.tick
        market_id = market.market_id
        orders = book.orders
        taker_is_bid = kind < ASK_KIND_MIN
        taker_is_buy = KIND_IS_BUY[kind]
        taker_in_yes_terms = KIND_IN_YES_TERMS[kind]
        taker_yes_unit = KIND_YES_UNIT[kind]
        taker_no_unit = KIND_NO_UNIT[kind]
        taker_outcome = KIND_OUTCOME[kind]
        taker_side = KIND_SIDE[kind]
        if taker_is_bid:
            heads, tails, quantities = book.ask_head, book.ask_tail, book.ask_quantity
        else:
            heads, tails, quantities = book.bid_head, book.bid_tail, book.bid_quantity
        limit_level = yes_limit // tick
        cash_total = yes_total = no_total = escrow_total = 0
        trade_id = self.last_trade_id
        trade_kind: TradeKind
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
                    maker = following
                    continue
                maker_remaining = maker.remaining
                quantity = remaining if remaining < maker_remaining else maker_remaining
                remaining -= quantity
                maker_remaining -= quantity
                yes_price = maker.price
                maker_kind = maker.kind
                # The taker's side of the trade.
                own = yes_price if taker_in_yes_terms else PAYOUT - yes_price
                taker_cash = -own * quantity if taker_is_buy else own * quantity
                taker_yes = taker_yes_unit * quantity
                taker_no = taker_no_unit * quantity
                cash_total += taker_cash
                yes_total += taker_yes
                no_total += taker_no
                # The maker's side: a buy pays its own price (what it locked), a sell
                # gives up contracts it locked.
                own = yes_price if KIND_IN_YES_TERMS[maker_kind] else PAYOUT - yes_price
                maker_yes = KIND_YES_UNIT[maker_kind] * quantity
                maker_no = KIND_NO_UNIT[maker_kind] * quantity
                maker_account = maker.account
                maker_position = maker.position
                maker_position.yes += maker_yes
                maker_position.no += maker_no
                if KIND_IS_BUY[maker_kind]:
                    maker_cash = -own * quantity
                    maker_account.cash += maker_cash
                    maker_account.locked += maker_cash
                    if taker_is_buy:
                        trade_kind, escrow_delta = "mint", PAYOUT * quantity
                    else:
                        trade_kind, escrow_delta = "transfer", 0
                else:
                    maker_cash = own * quantity
                    maker_account.cash += maker_cash
                    maker_position.yes_locked += maker_yes
                    maker_position.no_locked += maker_no
                    if taker_is_buy:
                        trade_kind, escrow_delta = "transfer", 0
                    else:
                        trade_kind, escrow_delta = "merge", -PAYOUT * quantity
                escrow_total += escrow_delta
                trade_id += 1
                events.append(
                    TradeExecuted(
                        trade_id,
                        market_id,
                        trade_kind,
                        yes_price,
                        quantity,
                        order_id,
                        user_id,
                        taker_outcome,
                        taker_side,
                        maker.order_id,
                        maker.user_id,
                        KIND_OUTCOME[maker_kind],
                        KIND_SIDE[maker_kind],
                        taker_cash,
                        taker_yes,
                        taker_no,
                        maker_cash,
                        maker_yes,
                        maker_no,
                        escrow_delta,
                        remaining + unaffordable,
                        maker_remaining,
                    )
                )
                quantities[level] -= quantity
                if maker_remaining:
                    maker.remaining = maker_remaining  # the taker is done; the maker stays first
                    break
                # The maker filled: it leaves from the head of its level.
                maker.remaining = 0
                del orders[maker.order_id]
                heads[level] = following
                if following is None:
                    tails[level] = None
                    if taker_is_bid:
                        book.ask_mask &= ~(1 << level)
                    else:
                        book.bid_mask &= ~(1 << level)
                else:
                    following.prev = None
                maker.next = None
                maker = following
        self.last_trade_id = trade_id
        market.escrow += escrow_total
        if cash_total or yes_total or no_total:
            account.cash += cash_total
            position.yes += yes_total
            position.no += no_total
            if not taker_is_buy:  # a sell's filled contracts were locked
                position.yes_locked += yes_total
                position.no_locked += no_total
        return remaining

    def _release(self, order: RestingOrder, position: Position) -> tuple[int, int]:
        """Give back what a resting order's unfilled remainder holds: (cash, contracts)."""
        kind, remaining = order.kind, order.remaining
        if KIND_IS_BUY[kind]:
            released = order.own_price * remaining
            order.account.locked -= released
            return released, 0
        if kind == SELL_YES:
            position.yes_locked -= remaining
        else:
            position.no_locked -= remaining
        return 0, remaining

    def _cancel_resting(
        self, market: Market, order: RestingOrder, reason: str, events: list[Event]
    ) -> None:
        remaining = order.remaining
        released_cash, released_contracts = self._release(order, order.position)
        market.book.remove(order)
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
                assert order.account is self._accounts.get(order.user_id), (
                    f"{order} holds another account"
                )
                assert order.position is market.positions.get(order.user_id), (
                    f"{order} holds another position"
                )
                if KIND_IS_BUY[order.kind]:
                    locked_by_user[order.user_id] = (
                        locked_by_user.get(order.user_id, 0) + order.own_price * order.remaining
                    )
                else:
                    key = (order.user_id, order.kind)
                    contracts_locked[key] = contracts_locked.get(key, 0) + order.remaining
            listed = {
                o.order_id: o for p in market.positions.values() for o in p.orders if o.remaining
            }
            assert listed == book.orders, (
                f"market {market.market_id}: per-user order lists differ from the book"
            )
            for user_id, position in market.positions.items():
                ids = [o.order_id for o in position.orders]
                assert ids == sorted(ids), f"user {user_id}'s orders out of arrival order"
                assert all(o.user_id == user_id for o in position.orders), (
                    f"an order misfiled under user {user_id}"
                )
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
                assert 0 <= position.yes_locked <= position.yes, (
                    f"user {user_id} YES {position.yes}/{position.yes_locked}"
                )
                assert 0 <= position.no_locked <= position.no, (
                    f"user {user_id} NO {position.no}/{position.no_locked}"
                )
                yes_total += position.yes
                no_total += position.no
            sellers = {user_id for user_id, _ in contracts_locked}
            assert sellers <= set(market.positions), (
                f"market {market.market_id}: sells without positions"
            )
            assert yes_total == no_total, (
                f"market {market.market_id}: YES {yes_total} != NO {no_total} outstanding"
            )
            assert market.escrow == PAYOUT * yes_total, (
                f"market {market.market_id}: escrow {market.escrow} != 1000 x {yes_total} YES outstanding"
            )
            if market.status in ("closed", "resolved"):
                assert not book.orders, (
                    f"market {market.market_id} is {market.status} with open orders"
                )
            escrow_total += market.escrow
        for user_id, account in self._accounts.items():
            assert account.locked == locked_by_user.get(user_id, 0), (
                f"user {user_id}: locked {account.locked} != open buys {locked_by_user.get(user_id, 0)}"
            )
            assert 0 <= account.locked <= account.cash, (
                f"user {user_id}: cash {account.cash}, locked {account.locked}"
            )
        assert set(locked_by_user) <= set(self._accounts), "open buys of a user with no account"
        total = sum(a.cash for a in self._accounts.values()) + escrow_total + self._fees
        assert total == self._credited, (
            f"money not conserved: {total} held vs {self._credited} credited"
        )
