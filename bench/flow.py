"""A deterministic order flow for the matching-engine benchmark (`bench.engine`).

One market, YES prices 50..950 (tick 50), `users` funded users. The generator keeps a
shadow of the exchange (book in price-time priority, cash and contract locks per user,
the SPEC §6 trade kinds of docs/MATCHING.md) so that every command it emits is accepted
by `probo.orderbook.Exchange`, every cancel names an order that is open at that moment,
and no incoming order ever meets an order of its own user (the other engines have no
self-trade prevention, so with none in the flow all engines keep identical books).

Everything happens before timing; the shadow's final state is kept to check the engine
after the run.

The flow, per command: 5% cancels of a random open order; of the places, about 30%
cross (they meet 1+ resting orders; almost all fill completely, some sweep on and rest
a remainder), the rest join the book at a random distance behind the touch. Each place
is first decided in book terms (bid or ask at a YES price), then given a user and an
order kind: a bid at YES p is buy YES @p or sell NO @(1000-p), an ask at p is sell YES
@p or buy NO @(1000-p). Half the places want to sell; a seller must hold the contracts
(available = held - locked), otherwise another user is tried, then it becomes the buy of
the same book side and price. A warm-up of crossing buy YES / buy NO pairs (not timed)
mints `warmup_contracts` YES and NO for every user first.

A controller keeps the book near `target_depth` resting orders: crossing orders take
more resting orders when the book is deeper than that.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass, field

from probo.orderbook.types import CancelOrder, PlaceOrder

PAYOUT = 1000
TICK = 50
LEVELS = 19  # YES prices TICK .. PAYOUT - TICK
MARKET_ID = 1

# Book-terms op codes of the parallel lists (`Flow.op`).
BID, ASK, CANCEL = 0, 1, 2
# Order kinds.
BUY_YES, SELL_NO, SELL_YES, BUY_NO = 0, 1, 2, 3
KIND_FIELDS = {
    BUY_YES: ("yes", "buy"),
    SELL_NO: ("no", "sell"),
    SELL_YES: ("yes", "sell"),
    BUY_NO: ("no", "buy"),
}


@dataclass
class Flow:
    n: int
    users: int
    funding: int
    seed: int
    target_depth: int
    warmup: list[PlaceOrder]  # untimed; every order fully filled by the end
    commands: list[PlaceOrder | CancelOrder]  # the timed flow, for probo
    # Parallel book-terms lists for the other engines (one entry per command).
    op: bytearray  # BID / ASK / CANCEL
    yes_price: array  # YES price of a place (0 for a cancel)
    quantity: array  # quantity of a place (0 for a cancel)
    target: array  # for a cancel: the place ordinal (0-based among timed places) it cancels
    expected_events: array  # per command: 1 + trades for a place, 1 for a cancel
    # Counts.
    places: int = 0
    cancels: int = 0
    crossing: int = 0
    sells: int = 0
    sells_converted: int = 0  # wanted to sell, no user with the contracts: became a buy
    trades: int = 0
    traded_quantity: int = 0
    kinds: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    trade_kinds: dict[str, int] = field(default_factory=dict)
    max_resting: int = 0
    # Shadow final state, for checking the engine after the run.
    final_cash: list[int] = field(default_factory=list)
    final_locked_cash: list[int] = field(default_factory=list)
    final_position: list[tuple[int, int, int, int]] = field(default_factory=list)
    final_open: list[tuple[int, int]] = field(default_factory=list)  # (probo order id, remaining)
    final_levels: dict[tuple[int, int], int] = field(
        default_factory=dict
    )  # (BID/ASK, price) -> qty
    final_escrow: int = 0
    warmup_orders: int = 0
    warmup_contracts: int = 0


class _Order:
    __slots__ = ("oid", "ordinal", "user", "kind", "side", "yes_price", "own_price", "remaining")

    def __init__(self, oid, ordinal, user, kind, side, yes_price, own_price, remaining):
        self.oid = oid
        self.ordinal = ordinal
        self.user = user
        self.kind = kind
        self.side = side
        self.yes_price = yes_price
        self.own_price = own_price
        self.remaining = remaining


class _Shadow:
    """The exchange as the flow sees it: book, locks, holdings, escrow."""

    def __init__(self, users: int, funding: int) -> None:
        n = users + 1  # user ids 1..users
        self.cash = [funding] * n
        self.locked_cash = [0] * n
        self.held = [[0] * n, [0] * n]  # [yes, no]
        self.locked = [[0] * n, [0] * n]
        self.escrow = 0
        # levels[side][i]: list of orders at YES price (i+1)*TICK, front = first in time;
        # `head` skips orders already gone (lazy removal).
        self.levels = [[[] for _ in range(LEVELS)] for _ in range(2)]
        self.head = [[0] * LEVELS for _ in range(2)]
        self.live = [[0] * LEVELS for _ in range(2)]  # live orders per level
        self.open: list[_Order] = []  # for random cancels (swap-remove)
        self.open_pos: dict[int, int] = {}
        self.next_oid = 1
        self.trades = 0
        self.traded_quantity = 0
        self.trade_kinds = {"transfer": 0, "mint": 0, "merge": 0}

    # -- the book --------------------------------------------------------------------

    def best(self, side: int) -> int | None:
        """Best level index of `side` (highest bid, lowest ask), None if empty."""
        live = self.live[side]
        rng = range(LEVELS - 1, -1, -1) if side == BID else range(LEVELS)
        for i in rng:
            if live[i]:
                return i
        return None

    def makers(self, side: int, limit_index: int):
        """Live resting orders of `side` at prices acceptable to an opposite order with
        YES limit index `limit_index`, in priority order."""
        if side == ASK:
            idx = range(0, limit_index + 1)
        else:
            idx = range(LEVELS - 1, limit_index - 1, -1)
        for i in idx:
            if not self.live[side][i]:
                continue
            level = self.levels[side][i]
            for j in range(self.head[side][i], len(level)):
                order = level[j]
                if order.remaining:
                    yield order

    def resting(self) -> int:
        return len(self.open)

    def _unlist(self, order: _Order) -> None:
        pos = self.open_pos.pop(order.oid)
        last = self.open.pop()
        if last is not order:
            self.open[pos] = last
            self.open_pos[last.oid] = pos
        i = order.yes_price // TICK - 1
        self.live[order.side][i] -= 1
        level = self.levels[order.side][i]
        h = self.head[order.side][i]
        while h < len(level) and not level[h].remaining:
            h += 1
        if h == len(level):
            level.clear()
            h = 0
        elif h > 1024:
            del level[:h]
            h = 0
        self.head[order.side][i] = h

    # -- commands --------------------------------------------------------------------

    def can_afford(self, user: int, kind: int, own_price: int, quantity: int) -> bool:
        if kind in (BUY_YES, BUY_NO):
            return self.cash[user] - self.locked_cash[user] >= own_price * quantity
        outcome = 0 if kind == SELL_YES else 1
        return self.held[outcome][user] - self.locked[outcome][user] >= quantity

    def place(
        self, user: int, kind: int, yes_price: int, quantity: int, ordinal: int
    ) -> tuple[int, int]:
        """Apply an accepted gtc limit order; returns (order id, trades)."""
        side = BID if kind in (BUY_YES, SELL_NO) else ASK
        own_price = yes_price if kind in (BUY_YES, SELL_YES) else PAYOUT - yes_price
        if kind in (BUY_YES, BUY_NO):
            assert self.cash[user] - self.locked_cash[user] >= own_price * quantity
            self.locked_cash[user] += own_price * quantity
        else:
            outcome = 0 if kind == SELL_YES else 1
            assert self.held[outcome][user] - self.locked[outcome][user] >= quantity
            self.locked[outcome][user] += quantity
        oid = self.next_oid
        self.next_oid += 1
        taker = _Order(oid, ordinal, user, kind, side, yes_price, own_price, quantity)
        trades = 0
        li = yes_price // TICK - 1
        for maker in list(self.makers(1 - side, li)):
            if not taker.remaining:
                break
            assert maker.user != user, "the flow must not self-trade"
            k = min(taker.remaining, maker.remaining)
            self._trade(taker, maker, k)
            trades += 1
        if taker.remaining:
            self.levels[side][li].append(taker)
            self.live[side][li] += 1
            self.open_pos[oid] = len(self.open)
            self.open.append(taker)
        return oid, trades

    def _trade(self, taker: _Order, maker: _Order, k: int) -> None:
        x = maker.yes_price
        bid, ask = (taker, maker) if taker.side == BID else (maker, taker)
        for order in (bid, ask):
            u = order.user
            if order.kind == BUY_YES:
                self.cash[u] -= x * k
                self.locked_cash[u] -= order.own_price * k
                self.held[0][u] += k
            elif order.kind == SELL_NO:
                self.cash[u] += (PAYOUT - x) * k
                self.held[1][u] -= k
                self.locked[1][u] -= k
            elif order.kind == SELL_YES:
                self.cash[u] += x * k
                self.held[0][u] -= k
                self.locked[0][u] -= k
            else:  # BUY_NO
                self.cash[u] -= (PAYOUT - x) * k
                self.locked_cash[u] -= order.own_price * k
                self.held[1][u] += k
        if bid.kind == BUY_YES and ask.kind == BUY_NO:
            self.escrow += PAYOUT * k
            self.trade_kinds["mint"] += 1
        elif bid.kind == SELL_NO and ask.kind == SELL_YES:
            self.escrow -= PAYOUT * k
            self.trade_kinds["merge"] += 1
        else:
            self.trade_kinds["transfer"] += 1
        taker.remaining -= k
        maker.remaining -= k
        self.trades += 1
        self.traded_quantity += k
        if not maker.remaining:
            self._unlist(maker)

    def cancel(self, order: _Order) -> None:
        u = order.user
        if order.kind in (BUY_YES, BUY_NO):
            self.locked_cash[u] -= order.own_price * order.remaining
        else:
            self.locked[0 if order.kind == SELL_YES else 1][u] -= order.remaining
        order.remaining = 0
        self._unlist(order)


def _kind_for(side: int, sell: bool) -> int:
    if side == BID:
        return SELL_NO if sell else BUY_YES
    return SELL_YES if sell else BUY_NO


def _own_price(kind: int, yes_price: int) -> int:
    return yes_price if kind in (BUY_YES, SELL_YES) else PAYOUT - yes_price


def _place_order(user: int, kind: int, yes_price: int, quantity: int) -> PlaceOrder:
    outcome, side = KIND_FIELDS[kind]
    return PlaceOrder(
        user_id=user,
        market_id=MARKET_ID,
        outcome=outcome,
        side=side,
        type="limit",
        quantity=quantity,
        price=_own_price(kind, yes_price),
        time_in_force="gtc",
    )


def generate(
    n: int = 1_000_000,
    *,
    users: int = 1000,
    seed: int = 20240601,
    cancel_rate: float = 0.05,
    cross_rate: float = 0.30,
    sell_rate: float = 0.5,
    target_depth: int = 2000,
    funding: int = 10**11,
    warmup_contracts: int = 5000,
) -> Flow:
    rng = random.Random(seed)
    shadow = _Shadow(users, funding)
    flow = Flow(
        n=n,
        users=users,
        funding=funding,
        seed=seed,
        target_depth=target_depth,
        warmup=[],
        commands=[],
        op=bytearray(n),
        yes_price=array("i", bytes(4 * n)),
        quantity=array("i", bytes(4 * n)),
        target=array("i", bytes(4 * n)),
        expected_events=array("i", bytes(4 * n)),
    )

    # Warm-up: user u buys YES @500, user u+1 buys NO @500 against it: a mint of
    # `warmup_contracts` each, so every user holds that many YES and NO.
    half = PAYOUT // 2
    for u in range(1, users + 1):
        v = u % users + 1
        for user, kind in ((u, BUY_YES), (v, BUY_NO)):
            flow.warmup.append(_place_order(user, kind, half, warmup_contracts))
            shadow.place(user, kind, half, warmup_contracts, -1)
    assert not shadow.resting()
    flow.warmup_orders = len(flow.warmup)
    flow.warmup_contracts = warmup_contracts

    commands = flow.commands
    op, yes_price, quantity, target, expected = (
        flow.op,
        flow.yes_price,
        flow.quantity,
        flow.target,
        flow.expected_events,
    )
    ordinal = 0  # timed places so far
    cross_debt = 0
    all_users = range(1, users + 1)

    def rest_quantity() -> int:
        return 1 + min(int(rng.expovariate(1 / 12)), 300)

    # A fair value (level index of the highest fair bid) wanders slowly around 500 and
    # anchors where resting orders join, so the book stays centred.
    fair = LEVELS // 2 - 1
    for i in range(n):
        if i % 500 == 0:
            fair += rng.choice((-1, 1)) if rng.random() < 0.5 else (1 if fair < 8 else -1)
            fair = min(LEVELS - 3, max(1, fair))
        # -- cancels ---------------------------------------------------------------
        if shadow.open and rng.random() < cancel_rate:
            order = shadow.open[rng.randrange(len(shadow.open))]
            commands.append(CancelOrder(order.user, MARKET_ID, order.oid))
            op[i] = CANCEL
            target[i] = order.ordinal
            expected[i] = 1
            shadow.cancel(order)
            flow.cancels += 1
            continue

        # -- a place, in book terms ------------------------------------------------
        side = BID if rng.random() < 0.5 else ASK
        want_cross = rng.random() < cross_rate
        opposite = 1 - side
        best_opp = shadow.best(opposite)
        if not want_cross and cross_debt and best_opp is not None:
            want_cross = True
            cross_debt -= 1
        elif want_cross and best_opp is None:
            side, opposite = opposite, side
            best_opp = shadow.best(opposite)
            if best_opp is None:
                want_cross = False
                cross_debt += 1

        conflict: set[int] = set()
        if want_cross:
            # Take the first k resting orders of the opposite side (more when the book
            # is deeper than the target), the last one maybe in part.
            k_mean = min(10.0, max(1.0, 2.4 * shadow.resting() / target_depth))
            k = rng.randint(1, max(1, int(2 * k_mean - 1)))
            taken = []
            for maker in shadow.makers(opposite, 0 if opposite == BID else LEVELS - 1):
                taken.append(maker)
                if len(taken) == k:
                    break
            qty = sum(m.remaining for m in taken[:-1]) + rng.randint(1, taken[-1].remaining)
            li = taken[-1].yes_price // TICK - 1
            if rng.random() < 0.25:  # a limit beyond what it needs
                step = rng.randint(1, 2)
                li = min(LEVELS - 1, li + step) if side == BID else max(0, li - step)
            if rng.random() < 0.10:  # wants more than it takes: sweeps on, may rest
                qty += rng.randint(1, 40)
            qty = min(qty, 100_000)
            conflict = set()
            left = qty
            for maker in shadow.makers(opposite, li):
                conflict.add(maker.user)
                left -= maker.remaining
                if left <= 0:
                    break
            flow.crossing += 1
        else:
            # Join the book behind the touch.
            bb, ba = shadow.best(BID), shadow.best(ASK)
            if side == BID and ba == 0:
                side = ASK
            elif side == ASK and bb == LEVELS - 1:
                side = BID
            distance = int(rng.expovariate(1 / 2.5))
            if side == BID:
                top = fair if ba is None else min(fair, ba - 1)
                li = max(0, top - distance)
            else:
                top = fair + 1 if bb is None else max(fair + 1, bb + 1)
                li = min(LEVELS - 1, top + distance)
            qty = rest_quantity()
        price = (li + 1) * TICK

        # -- a user and a kind ------------------------------------------------------
        user = rng.randint(1, users)
        while user in conflict:
            user = rng.randint(1, users)
        sell = rng.random() < sell_rate
        kind = _kind_for(side, sell)
        if sell and not shadow.can_afford(user, kind, _own_price(kind, price), qty):
            for _ in range(4):
                other = rng.choice(all_users)
                if other not in conflict and shadow.can_afford(
                    other, kind, _own_price(kind, price), qty
                ):
                    user = other
                    break
            else:
                kind = _kind_for(side, False)
                flow.sells_converted += 1
        if kind in (SELL_NO, SELL_YES):
            flow.sells += 1
        flow.kinds[kind] += 1

        commands.append(_place_order(user, kind, price, qty))
        op[i] = side
        yes_price[i] = price
        quantity[i] = qty
        _, trades = shadow.place(user, kind, price, qty, ordinal)
        assert trades or not want_cross
        expected[i] = 1 + trades
        ordinal += 1
        flow.places += 1
        flow.max_resting = max(flow.max_resting, shadow.resting())

    flow.trades = shadow.trades - users  # less the warm-up mints
    flow.traded_quantity = shadow.traded_quantity - users * warmup_contracts
    flow.trade_kinds = dict(shadow.trade_kinds)
    flow.trade_kinds["mint"] -= users
    flow.final_cash = shadow.cash
    flow.final_locked_cash = shadow.locked_cash
    flow.final_position = [
        (shadow.held[0][u], shadow.held[1][u], shadow.locked[0][u], shadow.locked[1][u])
        for u in range(users + 1)
    ]
    flow.final_open = sorted((o.oid, o.remaining) for o in shadow.open)
    levels: dict[tuple[int, int], int] = {}
    for o in shadow.open:
        levels[(o.side, o.yes_price)] = levels.get((o.side, o.yes_price), 0) + o.remaining
    flow.final_levels = levels
    flow.final_escrow = shadow.escrow
    return flow
