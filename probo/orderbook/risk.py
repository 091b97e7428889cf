"""Risk: what an order may hold of its user's cash and contracts, and what it gives back.

The rules of `docs/MATCHING.md` ("Locks", checks 5 and 6, fok and market buy) over
`Account` and `Position` only. This module never walks the book: the liquidity a
market buy or a fok needs arrives as numbers the book read out (`Book.levels`,
`Book.quantity_within`), and the user's own resting orders come from the user's own
order list on their `Position`. The book, for its part, never sees a balance.

A hold is taken once, on entry (`hold_cash`, `hold_contracts`), and given back exactly
once per contract: by a fill (`fill_maker`, `fill_taker`) or by the release of what
did not fill (`release_cash`, `release_contracts`, `release_order`).
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
    RestingOrder,
    kind_in_yes_terms,
    kind_is_buy,
    live_orders,
)

# A named bound: it keeps every per-user walk (cancel-all, fok and market-buy
# liquidity) short, whatever the rest of the book holds.
OPEN_ORDERS_PER_USER_MAX: Final = 1000


def yes_unit(kind: int) -> int:
    """The YES contracts one filled contract of `kind` moves to its owner."""
    return 1 if kind == BUY_YES else -1 if kind == SELL_YES else 0


def no_unit(kind: int) -> int:
    """The NO contracts one filled contract of `kind` moves to its owner."""
    return 1 if kind == BUY_NO else -1 if kind == SELL_NO else 0


# --- checks ----------------------------------------------------------------------------


def at_open_orders_max(position: Position | None) -> bool:
    """Whether the user already has `OPEN_ORDERS_PER_USER_MAX` open orders in the market."""
    return (
        position is not None
        and len(position.orders) >= OPEN_ORDERS_PER_USER_MAX  # dead entries too: cheap first
        and len(live_orders(position)) >= OPEN_ORDERS_PER_USER_MAX
    )


def available_cash(account: Account | None) -> int:
    return account.cash - account.locked if account is not None else 0


def available_contracts(position: Position | None, kind: int) -> int:
    """The contracts a sell of `kind` may still lock: held less what open sells hold."""
    if position is None:
        return 0
    if kind == SELL_YES:
        return position.yes - position.yes_locked
    return position.no - position.no_locked


def own_quantity_by_price(position: Position | None, asks: bool) -> dict[int, int]:
    """The user's resting quantity per YES price on one side (bounded by its open orders)."""
    quantity_by_price: dict[int, int] = {}
    if position is not None:
        for order in live_orders(position):
            if (order.kind >= ASK_KIND_MIN) == asks:
                price = order.price
                quantity_by_price[price] = quantity_by_price.get(price, 0) + order.remaining
    return quantity_by_price


def own_quantity_within(position: Position | None, asks: bool, yes_limit: int) -> int:
    """The user's resting quantity on one side that an order of theirs limited at
    `yes_limit` would meet (and cancel, self-trade): asks at or below it, bids at or
    above it."""
    total = 0
    if position is not None:
        for order in live_orders(position):
            if (order.kind >= ASK_KIND_MIN) == asks and (
                order.price <= yes_limit if asks else order.price >= yes_limit
            ):
                total += order.remaining
    return total


def market_buy_reach(
    levels: list[tuple[int, int]],
    own_by_price: dict[int, int],
    buys_yes: bool,
    quantity: int,
    available: int,
) -> tuple[int, int, bool]:
    """A market buy's (quantity, exact cost) within `available` cash, and whether other
    users rest any liquidity at all.

    `levels` is the opposite side's (YES price, quantity), best first; the user's own
    quantity there is left out (it is canceled when met, never bought). Whole contracts
    are taken level by level while they are affordable."""
    got = cost = 0
    liquidity = False
    for price, resting in levels:
        others = resting - own_by_price.get(price, 0)
        if others <= 0:
            continue
        liquidity = True
        unit = price if buys_yes else PAYOUT - price
        take = min(others, quantity - got, (available - cost) // unit)
        if take <= 0:
            break  # later levels cost more
        got += take
        cost += take * unit
        if got == quantity:
            break
    return got, cost, liquidity


# --- holds and releases ----------------------------------------------------------------


def hold_cash(account: Account, amount: int) -> None:
    account.locked += amount


def release_cash(account: Account, amount: int) -> None:
    account.locked -= amount


def hold_contracts(position: Position, kind: int, quantity: int) -> None:
    if kind == SELL_YES:
        position.yes_locked += quantity
    else:
        position.no_locked += quantity


def release_contracts(position: Position, kind: int, quantity: int) -> None:
    if kind == SELL_YES:
        position.yes_locked -= quantity
    else:
        position.no_locked -= quantity


def release_order(order: RestingOrder) -> tuple[int, int]:
    """Give back what a resting order's unfilled remainder holds: (cash, contracts)."""
    kind, remaining = order.kind, order.remaining
    if kind_is_buy(kind):
        released = order.own_price * remaining
        order.account.locked -= released
        return released, 0
    release_contracts(order.position, kind, remaining)
    return 0, remaining


# --- fills -----------------------------------------------------------------------------


def fill_maker(maker: RestingOrder, quantity: int) -> int:
    """A resting order filled `quantity` at its own price: a buy pays what it locked for
    them, a sell gives up the contracts it locked. Returns the maker's cash delta."""
    kind = maker.kind
    position = maker.position
    account = maker.account
    yes_price = maker.price
    own = yes_price if kind_in_yes_terms(kind) else PAYOUT - yes_price
    yes = yes_unit(kind) * quantity
    no = no_unit(kind) * quantity
    position.yes += yes
    position.no += no
    if kind_is_buy(kind):
        cash = -own * quantity
        account.cash += cash
        account.locked += cash
    else:
        cash = own * quantity
        account.cash += cash
        position.yes_locked += yes
        position.no_locked += no
    return cash


def fill_taker(
    account: Account, position: Position, is_buy: bool, cash: int, yes: int, no: int
) -> None:
    """An incoming order's trades, all at once: cash and contracts move, and a sell's
    filled contracts leave its lock. (A buy's cash lock is released by the caller: how
    much depends on the order's type.)"""
    account.cash += cash
    position.yes += yes
    position.no += no
    if not is_buy:
        position.yes_locked += yes
        position.no_locked += no
