"""`Entry`: what the engine hands the ledger writer for one command, and who it is about."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from probo.orderbook.types import (
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
)


class Entry:
    """One command's events, the time the engine decided them, and who waits for the
    commit (the HTTP request; None when nobody does).

    `balances` holds, for the users someone watches live, their (cash, locked) right
    after this command: what the commit of this entry makes true."""

    __slots__ = ("events", "at", "waiter", "balances")

    def __init__(
        self,
        events: Sequence[Any],
        at: datetime,
        waiter: asyncio.Future[Entry] | None,
        balances: dict[int, tuple[int, int]] | None = None,
    ) -> None:
        self.events = events
        self.at = at
        self.waiter = waiter
        self.balances = balances


# Events whose own `user_id` is the user who decided them (their command's owner).
_DECIDED_BY_USER = (
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderDuplicate,
    WithdrawalAccepted,
    WithdrawalRejected,
    WithdrawalDuplicate,
    PairsChanged,
)


def parties(events: Iterable[Any]) -> tuple[set[int], set[int]]:
    """(the users whose cash, locks or contracts decided these events, the users they
    only changed): a taker, an order's owner, a withdrawer decide; a maker whose resting
    order was met and a holder paid at resolution are only changed. An event type not
    listed here is a bug."""
    deciding: set[int] = set()
    changed: set[int] = set()
    for event in events:
        kind = type(event)
        if kind is TradeExecuted:
            deciding.add(event.taker_user_id)
            changed.add(event.maker_user_id)
        elif kind is Settlement:
            changed.update(payout.user_id for payout in event.payouts)
        elif kind in _DECIDED_BY_USER:
            deciding.add(event.user_id)
        elif kind is not MarketStatusChanged:  # a market's, no user's
            raise AssertionError(f"parties() does not know {kind.__name__} events")
    return deciding, changed
