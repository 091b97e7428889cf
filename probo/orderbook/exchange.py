"""The matching core: every market's book and the accounts all markets share.

Pure and synchronous: commands in, events out, no IO and no `await`, so a
check-and-lock can never interleave with another. `place` runs in stages, in order:
check → risk hold → matching → rest or risk release. The book (`book.py`) never sees a
balance; the risk rules (`risk.py`) never walk the book; this module strings them
together. `docs/MATCHING.md` states every rule it follows.
"""

from __future__ import annotations

from typing import Final

from probo.orderbook.accounts import Account, Position
from probo.orderbook.book import (
    ASK_KIND_MIN,
    BUY_NO,
    BUY_YES,
    PAYOUT,
    SELL_NO,
    SELL_YES,
    Book,
    RestingOrder,
    kind_in_yes_terms,
    kind_is_buy,
    kind_outcome,
    kind_side,
    live_orders,
)
from probo.orderbook.client_ids import CLIENT_ORDER_IDS_RECENT_MAX, ClientOrderIds
from probo.orderbook.risk import (
    OPEN_ORDERS_PER_USER_MAX,
    at_open_orders_max,
    available_cash,
    available_contracts,
    fill_maker,
    fill_taker,
    hold_cash,
    hold_contracts,
    market_buy_reach,
    no_unit,
    own_quantity_by_price,
    own_quantity_within,
    release_cash,
    release_contracts,
    release_order,
    yes_unit,
)
from probo.orderbook.settlement import BASIS_POINTS, YES_VALUE, compute_settlement
from probo.orderbook.types import (
    QUANTITY_MAX,
    QUANTITY_MIN,
    TICK_DEFAULT,
    CancelAll,
    CancelOrder,
    Event,
    MarketStatusChanged,
    MergePairs,
    OrderAccepted,
    OrderCanceled,
    OrderDuplicate,
    OrderRejected,
    PairsChanged,
    PlaceOrder,
    Settlement,
    SplitPairs,
    TimeInForce,
    TradeExecuted,
    TradeKind,
)

ORDER_QUANTITY_MAX: Final = QUANTITY_MAX
TIMES_IN_FORCE: Final = ("gtc", "ioc", "fok")


class InvalidMarketTransition(Exception):
    """A market status change that the lifecycle does not allow."""


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


class Taker:
    """An incoming order on its way through `place`: what the checks found, what the
    risk hold took, and what matching left. It is the taker of every trade it makes."""

    __slots__ = (
        "command",
        "market",
        "user_id",
        "client_order_id",
        "kind",
        "own_price",
        "yes_limit",
        "quantity",
        "time_in_force",
        "is_market",
        "working",
        "remaining",
        "held_cash",
        "account",
        "position",
        "order_id",
    )

    def __init__(
        self,
        command: PlaceOrder,
        market: Market,
        user_id: int,
        client_order_id: str | None,
        kind: int,
        own_price: int,
        quantity: int,
        time_in_force: TimeInForce,
        is_market: bool,
        position: Position | None,
    ) -> None:
        self.command = command  # for a refusal's fields
        self.market = market
        self.user_id = user_id
        self.client_order_id = client_order_id
        self.kind = kind
        self.own_price = own_price  # own terms; a market order's is its extreme price
        self.yes_limit = own_price if kind_in_yes_terms(kind) else PAYOUT - own_price
        self.quantity = quantity  # as asked for
        self.time_in_force = time_in_force
        self.is_market = is_market
        self.working = quantity  # what it may fill: less for a market buy short of cash
        self.remaining = quantity  # of `working`, still unfilled
        self.held_cash = 0  # what a buy still locks
        self.account: Account | None = None  # set by the hold, which may create it
        self.position = position  # set by the hold if the user had none
        self.order_id = 0


def _order_kind(outcome: str, side: str) -> int:
    """The order's kind (BUY_YES ... BUY_NO), or -1 for an unknown outcome or side."""
    if outcome == "yes":
        return BUY_YES if side == "buy" else SELL_YES if side == "sell" else -1
    if outcome == "no":
        return BUY_NO if side == "buy" else SELL_NO if side == "sell" else -1
    return -1


def _working_price(
    price: int | None, order_type: str, time_in_force: str, tick: int, is_buy: bool
) -> tuple[int, str, str]:
    """The own price an order works at, or a rejection's code and message: a limit order
    names a price on the tick grid and gtc, ioc or fok; a market order names no price,
    is ioc, and works at the extreme price of its side."""
    if order_type == "limit":
        if price is None or time_in_force not in TIMES_IN_FORCE:
            return 0, "validation_error", "a limit order needs a price and gtc, ioc or fok"
        if price % tick or not tick <= price <= PAYOUT - tick:
            return (
                0,
                "invalid_price",
                f"price must be a multiple of {tick} in [{tick}, {PAYOUT - tick}]",
            )
        return price, "", ""
    if order_type == "market":
        if price is not None or time_in_force != "ioc":
            return 0, "validation_error", "a market order has no price and is ioc"
        return (PAYOUT - tick if is_buy else tick), "", ""
    return 0, "validation_error", "type must be limit or market"


def _pairs_rejected(command: SplitPairs | MergePairs, code: str, message: str) -> OrderRejected:
    return OrderRejected(
        user_id=command.user_id,
        market_id=command.market_id,
        code=code,  # type: ignore[arg-type]
        message=message,
    )


def _pairs_refused(command: SplitPairs | MergePairs, market: Market | None) -> list[Event] | None:
    """A split or merge of an unknown or stopped market, or of a quantity out of range."""
    if market is None:
        return [_pairs_rejected(command, "not_found", "unknown market")]
    if market.status != "open":
        return [_pairs_rejected(command, "market_not_open", f"the market is {market.status}")]
    if not QUANTITY_MIN <= command.quantity <= QUANTITY_MAX:
        message = f"quantity must be between {QUANTITY_MIN} and {QUANTITY_MAX}"
        return [_pairs_rejected(command, "invalid_quantity", message)]
    return None


class Exchange:
    def __init__(self, client_order_ids_recent_max: int = CLIENT_ORDER_IDS_RECENT_MAX) -> None:
        self.markets: dict[int, Market] = {}
        self._accounts: dict[int, Account] = {}
        self.client_order_ids = ClientOrderIds(client_order_ids_recent_max)
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
        if amount <= 0 or account is None or available_cash(account) < amount:
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
        if kind_is_buy(kind):
            hold_cash(account, own_price * remaining)
        else:
            hold_contracts(position, kind, remaining)
        yes_price = own_price if kind_in_yes_terms(kind) else PAYOUT - own_price
        market.book.add(
            RestingOrder(order_id, user_id, kind, yes_price, remaining, account, position)
        )
        if order_id > self.last_order_id:
            self.last_order_id = order_id

    def restore_client_order_id(
        self, user_id: int, client_order_id: str, order_id: int, market_id: int
    ) -> None:
        """Recovery, in order id order."""
        self.client_order_ids.restore(user_id, client_order_id, order_id, market_id)

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

    def _is_resting(self, market_id: int, order_id: int) -> bool:
        return order_id in self.markets[market_id].book.orders

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
        """Check → risk hold → matching → rest or risk release (docs/MATCHING.md,
        "Commands"). A stage that answers for the order ends the pipeline."""
        taker = self._check(command)
        if not isinstance(taker, Taker):
            return taker  # a repeat or a refusal: no id, nothing changed
        refused = self._hold(taker)
        if refused is not None:
            return refused
        events = self._accept(taker)
        self._match(taker, events)
        self._rest_or_release(taker, events)
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

    # --- split and merge ----------------------------------------------------------------

    def split(self, command: SplitPairs) -> list[Event]:
        """Cash into the escrow for YES + NO pairs; refused unless the market is open and
        the cash is available."""
        market = self.markets.get(command.market_id)
        refused = _pairs_refused(command, market)
        if refused is not None:
            return refused
        cost = PAYOUT * command.quantity
        account = self._accounts.get(command.user_id)
        if account is None or available_cash(account) < cost:
            return [
                _pairs_rejected(command, "insufficient_funds", f"{cost} paise are not available")
            ]
        assert market is not None
        position = market.positions.get(command.user_id)
        if position is None:
            position = market.positions[command.user_id] = Position()
        account.cash -= cost
        market.escrow += cost
        position.yes += command.quantity
        position.no += command.quantity
        return [self._pairs_changed("split", command, account, position)]

    def merge(self, command: MergePairs) -> list[Event]:
        """Unlocked YES + NO pairs back into cash out of the escrow; refused unless the
        market is open and the user holds the pairs unlocked."""
        market = self.markets.get(command.market_id)
        refused = _pairs_refused(command, market)
        if refused is not None:
            return refused
        assert market is not None
        position = market.positions.get(command.user_id)
        quantity = command.quantity
        if (
            position is None
            or position.yes - position.yes_locked < quantity
            or position.no - position.no_locked < quantity
        ):
            message = f"{quantity} unlocked YES and NO contracts are not held"
            return [_pairs_rejected(command, "insufficient_position", message)]
        account = self._account(command.user_id)
        proceeds = PAYOUT * quantity
        position.yes -= quantity
        position.no -= quantity
        market.escrow -= proceeds
        account.cash += proceeds
        return [self._pairs_changed("merge", command, account, position)]

    @staticmethod
    def _pairs_changed(
        kind: str, command: SplitPairs | MergePairs, account: Account, position: Position
    ) -> PairsChanged:
        return PairsChanged(
            kind=kind,  # type: ignore[arg-type]
            user_id=command.user_id,
            market_id=command.market_id,
            quantity=command.quantity,
            yes_quantity=position.yes,
            no_quantity=position.no,
            cash=account.cash,
            locked=account.locked,
        )

    # --- place, stage by stage ---------------------------------------------------------

    def _check(self, command: PlaceOrder) -> Taker | list[Event]:
        """Stage 1, the checks (docs/MATCHING.md 1-5): a repeated `client_order_id`
        answers with its original; an unknown or stopped market, a malformed order or
        one over the user's open-order bound is refused."""
        user_id = command.user_id
        client_order_id = command.client_order_id
        if client_order_id is not None:
            original = self.client_order_ids.order_id(user_id, client_order_id)
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
        kind = _order_kind(command.outcome, command.side)
        if kind < 0:
            return _reject(
                command, "validation_error", "outcome must be yes or no, side buy or sell"
            )
        order_type = command.type
        time_in_force = command.time_in_force
        own_price, code, message = _working_price(
            command.price, order_type, time_in_force, market.tick, kind_is_buy(kind)
        )
        if code:
            return _reject(command, code, message)
        quantity = command.quantity
        if not 1 <= quantity <= ORDER_QUANTITY_MAX:
            return _reject(
                command, "invalid_quantity", f"quantity must be between 1 and {QUANTITY_MAX}"
            )
        position = market.positions.get(user_id)
        if time_in_force == "gtc" and at_open_orders_max(position):
            return _reject(
                command,
                "too_many_open_orders",
                f"at most {OPEN_ORDERS_PER_USER_MAX} open orders per market",
            )
        return Taker(
            command,
            market,
            user_id,
            client_order_id,
            kind,
            own_price,
            quantity,
            time_in_force,
            order_type == "market",
            position,
        )

    def _hold(self, taker: Taker) -> list[Event] | None:
        """Stage 2, the risk hold (check 6): lock the cash a buy may spend or the
        contracts a sell gives up, or refuse the order. A refused order leaves no
        trace, not even an empty account."""
        user_id, kind, quantity = taker.user_id, taker.kind, taker.quantity
        account = self._accounts.get(user_id)
        position = taker.position
        if not kind_is_buy(kind):
            held = available_contracts(position, kind) if account is not None else 0
            if held < quantity or account is None or position is None:
                return _reject(
                    taker.command,
                    "insufficient_position",
                    f"sells {quantity}, {held} contracts available",
                )
            hold_contracts(position, kind, quantity)
            taker.account = account
            return None
        available = available_cash(account)
        if taker.is_market:
            buys_yes = kind == BUY_YES
            working, cost, liquidity = market_buy_reach(
                taker.market.book.levels(buys_yes),
                own_quantity_by_price(position, buys_yes),
                buys_yes,
                quantity,
                available,
            )
            if working == 0 and liquidity:
                return _reject(
                    taker.command, "insufficient_funds", "available funds do not buy one contract"
                )
            taker.working = taker.remaining = working
        else:
            cost = taker.own_price * quantity
            if cost > available:
                return _reject(
                    taker.command, "insufficient_funds", f"needs {cost}, {available} available"
                )
        if account is None:
            account = self._accounts[user_id] = Account()
        if position is None:
            position = taker.position = taker.market.positions[user_id] = Position()
        hold_cash(account, cost)
        taker.held_cash = cost
        taker.account = account
        return None

    def _accept(self, taker: Taker) -> list[Event]:
        """The order is in: the next order id, and `OrderAccepted` opens its events."""
        order_id = self.last_order_id + 1
        self.last_order_id = order_id
        taker.order_id = order_id
        client_order_id = taker.client_order_id
        if client_order_id is not None:
            self.client_order_ids.remember(
                taker.user_id, client_order_id, order_id, taker.market.market_id, self._is_resting
            )
        kind = taker.kind
        return [
            OrderAccepted(
                order_id,
                taker.user_id,
                taker.market.market_id,
                kind_outcome(kind),
                kind_side(kind),
                "market" if taker.is_market else "limit",
                taker.time_in_force,
                taker.own_price,
                taker.quantity,
                client_order_id,
                taker.held_cash,
                0 if kind_is_buy(kind) else taker.quantity,
            )
        ]

    def _match(self, taker: Taker, events: list[Event]) -> None:
        """Stage 3, matching: only when the opposite side's best price is within the
        limit, and for a fok only when other users' liquidity there fills it whole.
        A buy that filled gives back the part of its lock the fills released."""
        book = taker.market.book
        asks = taker.kind < ASK_KIND_MIN  # a bid meets asks
        if book.first_within(asks, taker.yes_limit) is None:
            return
        if taker.time_in_force == "fok":
            own = own_quantity_within(taker.position, asks, taker.yes_limit)
            quantity = taker.quantity
            if book.quantity_within(asks, taker.yes_limit, quantity + own) - own < quantity:
                return  # canceled whole, fok_unfilled; own resting orders stay
        self._trade(taker, events)
        filled = taker.working - taker.remaining
        if filled and kind_is_buy(taker.kind):
            # A limit buy gives back its own price per contract filled (so a better
            # price returns the difference); a market buy locked exactly its cost.
            released = taker.held_cash if taker.is_market else taker.own_price * filled
            taker.held_cash -= released
            account = taker.account
            assert account is not None
            release_cash(account, released)

    def _trade(self, taker: Taker, events: list[Event]) -> None:
        """Trade the taker's working quantity against the opposite side, in priority
        order, leaving its remainder in `taker.remaining`. The taker's own resting
        orders met on the way are canceled (self-trade).

        Each maker settles at its fill, the taker once at the end. Trade events report
        the taker's remainder against the quantity it asked for, a market buy's
        unaffordable part included. This loop is most of the engine's time.
        """
        market = taker.market
        book = market.book
        market_id = market.market_id
        user_id = taker.user_id
        order_id = taker.order_id
        kind = taker.kind
        yes_limit = taker.yes_limit
        asks = kind < ASK_KIND_MIN
        taker_is_buy = kind_is_buy(kind)
        taker_in_yes_terms = kind_in_yes_terms(kind)
        taker_yes_unit = yes_unit(kind)
        taker_no_unit = no_unit(kind)
        taker_outcome = kind_outcome(kind)
        taker_side = kind_side(kind)
        unaffordable = taker.quantity - taker.working
        remaining = taker.working
        cash_total = yes_total = no_total = escrow_total = 0
        trade_id = self.last_trade_id
        trade_kind: TradeKind
        maker = book.first_within(asks, yes_limit)
        while remaining and maker is not None:
            following = maker.next  # in the same level, or None at its end
            if maker.user_id == user_id:
                self._cancel_resting(market, maker, "self_trade", events)
                maker = following if following is not None else book.first_within(asks, yes_limit)
                continue
            maker_remaining = maker.remaining
            quantity = remaining if remaining < maker_remaining else maker_remaining
            remaining -= quantity
            maker_remaining -= quantity
            yes_price = maker.price
            maker_kind = maker.kind
            own = yes_price if taker_in_yes_terms else PAYOUT - yes_price
            taker_cash = -own * quantity if taker_is_buy else own * quantity
            taker_yes = taker_yes_unit * quantity
            taker_no = taker_no_unit * quantity
            cash_total += taker_cash
            yes_total += taker_yes
            no_total += taker_no
            maker_cash = fill_maker(maker, quantity)
            if kind_is_buy(maker_kind):
                if taker_is_buy:
                    trade_kind, escrow_delta = "mint", PAYOUT * quantity
                else:
                    trade_kind, escrow_delta = "transfer", 0
            elif taker_is_buy:
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
                    kind_outcome(maker_kind),
                    kind_side(maker_kind),
                    taker_cash,
                    taker_yes,
                    taker_no,
                    maker_cash,
                    yes_unit(maker_kind) * quantity,
                    no_unit(maker_kind) * quantity,
                    escrow_delta,
                    remaining + unaffordable,
                    maker_remaining,
                )
            )
            if maker_remaining:
                book.reduce(maker, quantity)  # the taker is done; the maker stays first
                break
            book.remove(maker)
            maker = following if following is not None else book.first_within(asks, yes_limit)
        self.last_trade_id = trade_id
        market.escrow += escrow_total
        taker.remaining = remaining
        account, position = taker.account, taker.position
        assert account is not None and position is not None
        if cash_total or yes_total or no_total:
            fill_taker(account, position, taker_is_buy, cash_total, yes_total, no_total)

    def _rest_or_release(self, taker: Taker, events: list[Event]) -> None:
        """Stage 4: a gtc remainder rests on the book, keeping what it holds; any other
        remainder (and a market buy's unaffordable part) is canceled and released."""
        remaining = taker.remaining
        kind = taker.kind
        account, position = taker.account, taker.position
        assert account is not None and position is not None
        if remaining and taker.time_in_force == "gtc":
            taker.market.book.add(
                RestingOrder(
                    taker.order_id,
                    taker.user_id,
                    kind,
                    taker.yes_limit,
                    remaining,
                    account,
                    position,
                )
            )
            return
        unworked = taker.quantity - taker.working
        if not remaining and not unworked:
            return  # filled
        released_cash = released_contracts = 0
        if kind_is_buy(kind):
            released_cash = taker.held_cash
            taker.held_cash = 0
            release_cash(account, released_cash)
        else:
            released_contracts = remaining
            release_contracts(position, kind, remaining)
        events.append(
            OrderCanceled(
                taker.order_id,
                taker.user_id,
                taker.market.market_id,
                "fok_unfilled" if taker.time_in_force == "fok" else "ioc_remainder",
                remaining + unworked,
                released_cash,
                released_contracts,
            )
        )

    def _cancel_resting(
        self, market: Market, order: RestingOrder, reason: str, events: list[Event]
    ) -> None:
        remaining = order.remaining
        released_cash, released_contracts = release_order(order)
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
                if kind_is_buy(order.kind):
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
