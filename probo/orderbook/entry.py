"""`Entry`: what the engine hands the ledger writer for one command."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any


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
