"""A deliberately naive reference implementation of the matching core (the test oracle).

`NaiveExchange` has the API of `probo.orderbook.Exchange` (docs/MATCHING.md) and emits
the same event structs (`probo.orderbook.types`) with the same field values, in the
same order, but is written for obviousness instead of speed, straight from
docs/MATCHING.md and SPEC §6, without looking at the fast engine:

- each market keeps one flat list of its resting orders; the opposite side is found by
  filtering that list and sorting it (price, then order id) on every match;
- locked cash and locked contracts are never tracked: they are recomputed from the
  open orders whenever they are asked for (an order working inside `place` is not on
  the book yet, so its own lock is a local variable there);
- money moves by applying the SPEC §6 table one trade at a time.

Choices where MATCHING.md is silent are marked "CHOICE" below; the property tests
(`test_engine_vs_naive.py`) report when the engine chose differently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from probo.orderbook.types import (
    CONTRACT_PAYOUT,
    QUANTITY_MAX,
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
    Payout,
    PlaceOrder,
    Settlement,
    SplitPairs,
    TradeExecuted,
)


class InvalidMarketTransition(Exception):
    """A market status change the lifecycle open ⇄ paused → closed does not allow."""


@dataclass
class NaiveOrder:
    """One accepted order; it rests on its market's book while `status == "open"`."""

    order_id: int
    user_id: int
    market_id: int
    outcome: str  # "yes" | "no"
    side: str  # "buy" | "sell"
    type: str  # "limit" | "market"
    time_in_force: str
    price: int  # own outcome terms
    quantity: int  # as asked for
    remaining: int  # still unfilled
    client_order_id: str | None
    status: str = "open"  # open | filled | canceled

    @property
    def is_bid(self) -> bool:
        """Buy YES and sell NO are bids of the YES book; sell YES and buy NO are asks."""
        return (self.outcome == "yes") == (self.side == "buy")

    @property
    def yes_price(self) -> int:
        return self.price if self.outcome == "yes" else CONTRACT_PAYOUT - self.price

    def own_cost(self, yes_price: int) -> int:
        """What one contract traded at `yes_price` costs (or pays) this order's owner."""
        return yes_price if self.outcome == "yes" else CONTRACT_PAYOUT - yes_price


@dataclass
class NaiveMarket:
    market_id: int
    tick: int
    status: str = "open"  # open | paused | closed
    settled: bool = False
    escrow: int = 0
    resting: list[NaiveOrder] = field(default_factory=list)  # arrival order, unsorted


def _priority_key(order: NaiveOrder) -> tuple[int, int]:
    """Best first: highest bid / lowest ask (YES price), then the older order."""
    if order.is_bid:
        return (-order.yes_price, order.order_id)
    return (order.yes_price, order.order_id)


def compute_settlement(
    market_id: int,
    holdings: Mapping[int, tuple[int, int]] | Iterable[tuple[int, int, int]],
    outcome: str,
    fee_bps: int,
) -> Settlement:
    """Pure settlement: `holdings` maps user id -> (yes, no) (or is (user, yes, no) rows).

    YES pays 1000 / 0 / 500 on yes / no / void and NO the rest; per holder
    gross = yes·v_yes + no·v_no, fee = floor(gross·fee_bps/10000), net = gross − fee;
    one payout per holder with gross > 0, by user id.
    """
    v_yes = {"yes": CONTRACT_PAYOUT, "no": 0, "void": CONTRACT_PAYOUT // 2}[outcome]
    v_no = CONTRACT_PAYOUT - v_yes
    if isinstance(holdings, Mapping):
        rows = [(user, yes, no) for user, (yes, no) in holdings.items()]
    else:
        rows = list(holdings)
    payouts = []
    for user, yes, no in sorted(rows):
        gross = yes * v_yes + no * v_no
        if gross <= 0:
            continue
        fee = gross * fee_bps // 10000
        payouts.append(
            Payout(
                user_id=user,
                yes_quantity=yes,
                no_quantity=no,
                gross=gross,
                fee=fee,
                net=gross - fee,
            )
        )
    return Settlement(
        market_id=market_id,
        outcome=outcome,
        payouts=payouts,
        escrow_released=sum(p.gross for p in payouts),
        fees=sum(p.fee for p in payouts),
    )


class NaiveExchange:
    """The reference exchange: same commands, same events, no cleverness."""

    def __init__(self) -> None:
        self.markets: dict[int, NaiveMarket] = {}
        self.cash_of: dict[int, int] = {}
        self.held: dict[tuple[int, int], list[int]] = {}  # (user, market) -> [yes, no]
        self.orders: dict[int, NaiveOrder] = {}  # every accepted order, by id
        self.client_ids: dict[tuple[int, str], NaiveOrder] = {}
        self.next_order_id = 1
        self.next_trade_id = 1
        self.credited = 0  # total outside credit, for conservation checks
        self.fees = 0  # settlement fees taken out of escrow

    # ------------------------------------------------------------------ setup

    def open_market(self, market_id: int, tick: int = TICK_DEFAULT) -> None:
        assert market_id not in self.markets, "market exists"
        self.markets[market_id] = NaiveMarket(market_id, tick)

    def credit(self, user_id: int, amount: int) -> None:
        self.cash_of[user_id] = self.cash_of.get(user_id, 0) + amount
        self.credited += amount

    # ------------------------------------------------------------------ views

    def cash(self, user_id: int) -> int:
        return self.cash_of.get(user_id, 0)

    def locked_cash(self, user_id: int) -> int:
        return sum(
            o.remaining * o.price
            for m in self.markets.values()
            for o in m.resting
            if o.user_id == user_id and o.side == "buy"
        )

    def available_cash(self, user_id: int) -> int:
        return self.cash(user_id) - self.locked_cash(user_id)

    def position(self, user_id: int, market_id: int) -> tuple[int, int, int, int]:
        yes, no = self.held.get((user_id, market_id), [0, 0])
        market = self.markets.get(market_id)
        resting = market.resting if market else []
        yes_locked = sum(
            o.remaining
            for o in resting
            if o.user_id == user_id and o.side == "sell" and o.outcome == "yes"
        )
        no_locked = sum(
            o.remaining
            for o in resting
            if o.user_id == user_id and o.side == "sell" and o.outcome == "no"
        )
        return (yes, no, yes_locked, no_locked)

    def escrow(self, market_id: int) -> int:
        return self.markets[market_id].escrow

    def open_orders(self, market_id: int) -> list[NaiveOrder]:
        """Every resting order: the bids best first, then the asks best first."""
        resting = self.markets[market_id].resting
        bids = sorted((o for o in resting if o.is_bid), key=_priority_key)
        asks = sorted((o for o in resting if not o.is_bid), key=_priority_key)
        return bids + asks

    def depth(self, market_id: int, levels: int | None = None) -> dict[str, list[tuple[int, int]]]:
        """SPEC §5: `yes` = YES bids at their YES price, `no` = YES asks at their NO price."""
        yes_levels: dict[int, int] = {}
        no_levels: dict[int, int] = {}
        for o in self.markets[market_id].resting:
            if o.is_bid:
                yes_levels[o.yes_price] = yes_levels.get(o.yes_price, 0) + o.remaining
            else:
                no_price = CONTRACT_PAYOUT - o.yes_price
                no_levels[no_price] = no_levels.get(no_price, 0) + o.remaining
        yes = sorted(yes_levels.items(), reverse=True)
        no = sorted(no_levels.items(), reverse=True)
        if levels is not None:
            yes, no = yes[:levels], no[:levels]
        return {"yes": yes, "no": no}

    def holders(self, market_id: int) -> dict[int, tuple[int, int]]:
        return {
            user: (yes, no)
            for (user, market), (yes, no) in self.held.items()
            if market == market_id and (yes or no)
        }

    # ------------------------------------------------------------------ helpers

    def _held(self, user_id: int, market_id: int) -> list[int]:
        return self.held.setdefault((user_id, market_id), [0, 0])

    def _reject(self, cmd: PlaceOrder, code: str, message: str) -> list[Event]:
        return [
            OrderRejected(
                user_id=cmd.user_id,
                market_id=cmd.market_id,
                code=code,
                message=message,
                client_order_id=cmd.client_order_id,
            )
        ]

    def _cancel(self, order: NaiveOrder, reason: str) -> OrderCanceled:
        """Take a resting order off its book; its lock is released (recomputed away)."""
        market = self.markets[order.market_id]
        market.resting.remove(order)
        order.status = "canceled"
        return OrderCanceled(
            order_id=order.order_id,
            user_id=order.user_id,
            market_id=order.market_id,
            reason=reason,
            canceled_quantity=order.remaining,
            released_cash=order.remaining * order.price if order.side == "buy" else 0,
            released_contracts=order.remaining if order.side == "sell" else 0,
        )

    @staticmethod
    def _meets(taker_is_bid: bool, yes_limit: int, maker: NaiveOrder) -> bool:
        if maker.is_bid == taker_is_bid:
            return False
        return maker.yes_price <= yes_limit if taker_is_bid else maker.yes_price >= yes_limit

    def _opposite(
        self, market: NaiveMarket, taker_is_bid: bool, yes_limit: int
    ) -> list[NaiveOrder]:
        """The resting orders an incoming order with this YES limit meets, best first."""
        met = [o for o in market.resting if self._meets(taker_is_bid, yes_limit, o)]
        return sorted(met, key=_priority_key)

    def _trade(
        self, taker: NaiveOrder, maker: NaiveOrder, k: int, taker_remaining: int
    ) -> TradeExecuted:
        """Apply one SPEC §6 trade of k at the maker's YES price and describe it."""
        x = maker.yes_price
        bid, ask = (taker, maker) if taker.is_bid else (maker, taker)
        # bid party: buy YES pays x, sell NO receives 1000 - x
        if bid.outcome == "yes":
            bid_delta = (-x * k, +k, 0)
        else:
            bid_delta = ((CONTRACT_PAYOUT - x) * k, 0, -k)
        # ask party: sell YES receives x, buy NO pays 1000 - x
        if ask.outcome == "yes":
            ask_delta = (x * k, -k, 0)
        else:
            ask_delta = (-(CONTRACT_PAYOUT - x) * k, 0, +k)
        if bid.side == "buy" and ask.side == "buy":
            kind, escrow_delta = "mint", CONTRACT_PAYOUT * k
        elif bid.side == "sell" and ask.side == "sell":
            kind, escrow_delta = "merge", -CONTRACT_PAYOUT * k
        else:
            kind, escrow_delta = "transfer", 0
        for party, (dcash, dyes, dno) in ((bid, bid_delta), (ask, ask_delta)):
            self.cash_of[party.user_id] = self.cash(party.user_id) + dcash
            held = self._held(party.user_id, party.market_id)
            held[0] += dyes
            held[1] += dno
        self.markets[maker.market_id].escrow += escrow_delta
        maker.remaining -= k
        if maker.remaining == 0:
            self.markets[maker.market_id].resting.remove(maker)
            maker.status = "filled"
        taker_delta = bid_delta if taker is bid else ask_delta
        maker_delta = bid_delta if maker is bid else ask_delta
        trade = TradeExecuted(
            trade_id=self.next_trade_id,
            market_id=maker.market_id,
            kind=kind,
            yes_price=x,
            quantity=k,
            taker_order_id=taker.order_id,
            taker_user_id=taker.user_id,
            taker_outcome=taker.outcome,
            taker_side=taker.side,
            maker_order_id=maker.order_id,
            maker_user_id=maker.user_id,
            maker_outcome=maker.outcome,
            maker_side=maker.side,
            taker_cash_delta=taker_delta[0],
            taker_yes_delta=taker_delta[1],
            taker_no_delta=taker_delta[2],
            maker_cash_delta=maker_delta[0],
            maker_yes_delta=maker_delta[1],
            maker_no_delta=maker_delta[2],
            escrow_delta=escrow_delta,
            taker_remaining=taker_remaining,
            maker_remaining=maker.remaining,
        )
        self.next_trade_id += 1
        return trade

    # ------------------------------------------------------------------ commands

    def place(self, cmd: PlaceOrder) -> list[Event]:
        # 1. duplicate client order id (any market)
        if (
            cmd.client_order_id is not None
            and (cmd.user_id, cmd.client_order_id) in self.client_ids
        ):
            original = self.client_ids[(cmd.user_id, cmd.client_order_id)]
            # CHOICE (MATCHING.md is silent): the duplicate carries the command's market
            # id, as the engine does, not the original order's.
            return [
                OrderDuplicate(
                    user_id=cmd.user_id,
                    market_id=cmd.market_id,
                    client_order_id=cmd.client_order_id,
                    order_id=original.order_id,
                )
            ]
        # 2. market
        market = self.markets.get(cmd.market_id)
        if market is None:
            return self._reject(cmd, "not_found", "unknown market")
        if market.status != "open":
            return self._reject(cmd, "market_not_open", "market not open")
        # 3. shape
        if cmd.type == "market":
            if cmd.price is not None or cmd.time_in_force != "ioc":
                return self._reject(cmd, "validation_error", "market order shape")
        elif cmd.price is None:
            return self._reject(cmd, "validation_error", "limit order without price")
        # 4. price, quantity
        tick = market.tick
        if cmd.type == "limit" and (
            cmd.price % tick != 0 or not tick <= cmd.price <= CONTRACT_PAYOUT - tick
        ):
            return self._reject(cmd, "invalid_price", "invalid price")
        if not 1 <= cmd.quantity <= QUANTITY_MAX:
            return self._reject(cmd, "invalid_quantity", "invalid quantity")

        # the price the order works at, in its own terms
        if cmd.type == "market":
            own_price = CONTRACT_PAYOUT - tick if cmd.side == "buy" else tick
        else:
            own_price = cmd.price
        probe = NaiveOrder(
            order_id=0,
            user_id=cmd.user_id,
            market_id=cmd.market_id,
            outcome=cmd.outcome,
            side=cmd.side,
            type=cmd.type,
            time_in_force=cmd.time_in_force,
            price=own_price,
            quantity=cmd.quantity,
            remaining=cmd.quantity,
            client_order_id=cmd.client_order_id,
        )
        is_bid, yes_limit = probe.is_bid, probe.yes_price
        met = self._opposite(market, is_bid, yes_limit)
        others = [o for o in met if o.user_id != cmd.user_id]

        # 5. funds / contracts
        working_quantity = cmd.quantity  # what it may fill
        locked_cash = locked_contracts = 0
        if cmd.side == "buy" and cmd.type == "market":
            available = self.available_cash(cmd.user_id)
            bought = cost = 0
            for o in others:
                unit = probe.own_cost(o.yes_price)
                take = min(o.remaining, cmd.quantity - bought, (available - cost) // unit)
                bought += take
                cost += take * unit
                if bought == cmd.quantity or take < o.remaining:
                    break
            if others and bought == 0:
                return self._reject(cmd, "insufficient_funds", "insufficient funds")
            working_quantity, locked_cash = bought, cost
        elif cmd.side == "buy":
            locked_cash = own_price * cmd.quantity
            if self.available_cash(cmd.user_id) < locked_cash:
                return self._reject(cmd, "insufficient_funds", "insufficient funds")
        else:
            yes, no, yes_locked, no_locked = self.position(cmd.user_id, cmd.market_id)
            free = yes - yes_locked if cmd.outcome == "yes" else no - no_locked
            if free < cmd.quantity:
                return self._reject(cmd, "insufficient_position", "insufficient position")
            locked_contracts = cmd.quantity

        # accepted
        order = probe
        order.order_id = self.next_order_id
        self.next_order_id += 1
        self.orders[order.order_id] = order
        if cmd.client_order_id is not None:
            self.client_ids[(cmd.user_id, cmd.client_order_id)] = order
        events: list[Event] = [
            OrderAccepted(
                order_id=order.order_id,
                user_id=cmd.user_id,
                market_id=cmd.market_id,
                outcome=cmd.outcome,
                side=cmd.side,
                type=cmd.type,
                time_in_force=cmd.time_in_force,
                price=own_price,
                quantity=cmd.quantity,
                client_order_id=cmd.client_order_id,
                locked_cash=locked_cash,
                locked_contracts=locked_contracts,
            )
        ]
        lock_left = locked_cash  # the working order's own cash lock (it is not on the book)

        if cmd.time_in_force == "fok" and sum(o.remaining for o in others) < cmd.quantity:
            order.status = "canceled"
            events.append(
                OrderCanceled(
                    order_id=order.order_id,
                    user_id=cmd.user_id,
                    market_id=cmd.market_id,
                    reason="fok_unfilled",
                    canceled_quantity=cmd.quantity,
                    released_cash=locked_cash,
                    released_contracts=locked_contracts,
                )
            )
            return events

        filled = 0
        for maker in met:  # a snapshot, best first; the taker never changes it but by removing
            if filled == working_quantity:
                break
            if maker.user_id == cmd.user_id:
                events.append(self._cancel(maker, "self_trade"))
                continue
            k = min(working_quantity - filled, maker.remaining)
            filled += k
            order.remaining -= k  # against the quantity asked for
            if cmd.side == "buy":
                # a limit buy releases its limit x k; a market buy locked the exact cost
                if cmd.type == "market":
                    lock_left -= probe.own_cost(maker.yes_price) * k
                else:
                    lock_left -= own_price * k
            # taker_remaining is against the quantity asked for (a market buy's
            # unaffordable part included), so the final cancel names the same number
            events.append(self._trade(order, maker, k, order.remaining))

        if order.remaining == 0:
            order.status = "filled"
        elif cmd.type == "limit" and cmd.time_in_force == "gtc":
            market.resting.append(order)
        else:
            order.status = "canceled"
            events.append(
                OrderCanceled(
                    order_id=order.order_id,
                    user_id=cmd.user_id,
                    market_id=cmd.market_id,
                    reason="ioc_remainder",
                    canceled_quantity=order.remaining,
                    released_cash=lock_left if cmd.side == "buy" else 0,
                    released_contracts=order.remaining if cmd.side == "sell" else 0,
                )
            )
        return events

    def cancel(self, cmd: CancelOrder) -> list[Event]:
        order = self.orders.get(cmd.order_id)
        if cmd.market_id not in self.markets or order is None:
            code = "not_found"  # unknown market (SPEC §10), or an id never issued
        elif order.status != "open":
            # MATCHING.md, literally: "an issued id no longer open -> order_not_open",
            # whoever's it is (SPEC §6 "another user's order is 404" says otherwise).
            code = "order_not_open"
        elif order.user_id != cmd.user_id:
            code = "not_found"  # another user's open order
        elif order.market_id != cmd.market_id:
            # CHOICE (MATCHING.md is silent): the user's own open order named with the
            # wrong market is not an open order of this user in this market
            code = "not_found"
        else:
            return [self._cancel(order, "user")]
        return [
            OrderRejected(
                user_id=cmd.user_id,
                market_id=cmd.market_id,
                code=code,
                message=code,
                order_id=cmd.order_id,
            )
        ]

    def cancel_all(self, cmd: CancelAll) -> list[Event]:
        market = self.markets.get(cmd.market_id)
        if market is None:  # SPEC §10: an unknown market is not_found
            return [
                OrderRejected(
                    user_id=cmd.user_id,
                    market_id=cmd.market_id,
                    code="not_found",
                    message="unknown market",
                )
            ]
        mine = sorted(
            (o for o in market.resting if o.user_id == cmd.user_id), key=lambda o: o.order_id
        )
        return [self._cancel(o, "user") for o in mine]

    # ------------------------------------------------------------------ split and merge

    def _pairs_refusal(self, cmd: SplitPairs | MergePairs) -> str | None:
        market = self.markets.get(cmd.market_id)
        if market is None:
            return "not_found"
        if market.status != "open":
            return "market_not_open"
        if not 1 <= cmd.quantity <= QUANTITY_MAX:
            return "invalid_quantity"
        return None

    def _pairs_rejected(self, cmd: SplitPairs | MergePairs, code: str) -> list[Event]:
        return [
            OrderRejected(user_id=cmd.user_id, market_id=cmd.market_id, code=code, message=code)
        ]

    def _pairs_changed(self, kind: str, cmd: SplitPairs | MergePairs) -> list[Event]:
        yes, no = self.held.get((cmd.user_id, cmd.market_id), [0, 0])
        return [
            PairsChanged(
                kind=kind,
                user_id=cmd.user_id,
                market_id=cmd.market_id,
                quantity=cmd.quantity,
                yes_quantity=yes,
                no_quantity=no,
                cash=self.cash(cmd.user_id),
                locked=self.locked_cash(cmd.user_id),
            )
        ]

    def split(self, cmd: SplitPairs) -> list[Event]:
        """SPEC §12: 1000 x quantity of available cash into the escrow; quantity YES and
        quantity NO to the user."""
        code = self._pairs_refusal(cmd)
        if code is not None:
            return self._pairs_rejected(cmd, code)
        cost = CONTRACT_PAYOUT * cmd.quantity
        if self.available_cash(cmd.user_id) < cost:
            return self._pairs_rejected(cmd, "insufficient_funds")
        self.cash_of[cmd.user_id] = self.cash(cmd.user_id) - cost
        self.markets[cmd.market_id].escrow += cost
        held = self._held(cmd.user_id, cmd.market_id)
        held[0] += cmd.quantity
        held[1] += cmd.quantity
        return self._pairs_changed("split", cmd)

    def merge(self, cmd: MergePairs) -> list[Event]:
        """SPEC §12: quantity unlocked YES and NO given up for 1000 x quantity out of the escrow."""
        code = self._pairs_refusal(cmd)
        if code is not None:
            return self._pairs_rejected(cmd, code)
        yes, no, yes_locked, no_locked = self.position(cmd.user_id, cmd.market_id)
        if yes - yes_locked < cmd.quantity or no - no_locked < cmd.quantity:
            return self._pairs_rejected(cmd, "insufficient_position")
        held = self._held(cmd.user_id, cmd.market_id)
        held[0] -= cmd.quantity
        held[1] -= cmd.quantity
        self.markets[cmd.market_id].escrow -= CONTRACT_PAYOUT * cmd.quantity
        self.cash_of[cmd.user_id] = self.cash(cmd.user_id) + CONTRACT_PAYOUT * cmd.quantity
        return self._pairs_changed("merge", cmd)

    # ------------------------------------------------------------------ market lifecycle

    def _market(self, market_id: int) -> NaiveMarket:
        market = self.markets.get(market_id)
        if market is None:
            raise InvalidMarketTransition(f"unknown market {market_id}")
        return market

    def pause_market(self, market_id: int) -> list[Event]:
        market = self._market(market_id)
        if market.status != "open":
            raise InvalidMarketTransition(f"{market.status} -> paused")
        market.status = "paused"
        return [MarketStatusChanged(market_id=market_id, status="paused")]

    def resume_market(self, market_id: int) -> list[Event]:
        market = self._market(market_id)
        if market.status != "paused":
            raise InvalidMarketTransition(f"{market.status} -> open")
        market.status = "open"
        return [MarketStatusChanged(market_id=market_id, status="open")]

    def close_market(self, market_id: int) -> list[Event]:
        market = self._market(market_id)
        if market.status == "closed":
            raise InvalidMarketTransition("closed -> closed")
        events: list[Event] = [
            self._cancel(o, "market_closed")
            for o in sorted(market.resting, key=lambda o: o.order_id)
        ]
        market.status = "closed"
        events.append(MarketStatusChanged(market_id=market_id, status="closed"))
        return events

    def settle_market(self, market_id: int, outcome: str, fee_bps: int = 0) -> Settlement:
        market = self._market(market_id)
        if market.status != "closed" or market.settled:
            raise InvalidMarketTransition(f"settle a {market.status} market")
        settlement = compute_settlement(market_id, self.holders(market_id), outcome, fee_bps)
        for payout in settlement.payouts:
            self.cash_of[payout.user_id] = self.cash(payout.user_id) + payout.net
        for (_user, market_of), held in self.held.items():
            if market_of == market_id:
                held[0] = held[1] = 0
        market.escrow = 0
        market.settled = True
        self.fees += settlement.fees
        return settlement
