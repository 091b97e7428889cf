"""The engine's front door: readiness, start-up recovery, and outside credits.

It owns the `Exchange` (the pure matching core and its accounts); the per-market
tasks and the ledger writer arrive with the order pipeline.

Start-up recovery loads every user's cash from Postgres and, in the same snapshot,
clears the credit outbox rows that snapshot already includes; rows committed later stay
for the mirror's reconciler. Credits are applied at most once, keyed by transfer id.
"""

from __future__ import annotations

import asyncpg
from loguru import logger

from probo.orderbook.credits import CreateUser, EngineCredit, EngineUnavailable
from probo.orderbook.exchange import Exchange


class Engine:
    def __init__(self) -> None:
        self.exchange = Exchange()
        self.ready = False
        # Credits applied whose outbox row may still exist; emptied as rows are cleared.
        self._applied_transfer_ids: set[int] = set()

    async def recover(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            users = await conn.fetch("SELECT id FROM users")
            cash = await conn.fetch("SELECT user_id, balance FROM accounts WHERE kind = 'user_cash'")
            # Under repeatable read this deletes only rows this snapshot can see: the
            # credits already inside the balances just read.
            included = await conn.fetch("DELETE FROM engine_credit_outbox RETURNING transfer_id")
        exchange = Exchange()
        for row in users:
            exchange.create_user(row["id"])
        for row in cash:
            if row["balance"] > 0:
                exchange.credit(row["user_id"], row["balance"])
        self.exchange = exchange
        self._applied_transfer_ids.clear()
        self.ready = True
        logger.info(
            "engine recovered {} users; {} pending credits were already in the balances",
            len(users),
            len(included),
        )

    def create_user(self, command: CreateUser) -> None:
        if not self.ready:
            raise EngineUnavailable("engine is recovering")
        self.exchange.create_user(command.user_id)

    async def apply_credit(self, credit: EngineCredit) -> bool:
        """Apply `credit` once; False if it was applied before. Raises EngineUnavailable."""
        if not self.ready:
            raise EngineUnavailable("engine is recovering")
        if credit.transfer_id in self._applied_transfer_ids:
            return False
        self._applied_transfer_ids.add(credit.transfer_id)
        self.exchange.credit(credit.user_id, credit.amount)
        return True

    def forget_applied(self, transfer_ids: list[int]) -> None:
        """Their outbox rows are gone, so nothing can offer these credits again."""
        self._applied_transfer_ids.difference_update(transfer_ids)
