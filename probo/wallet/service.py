"""The wallet: opening one with its signup bonus, balances and history; deposits
(probo/wallet/deposits.py) and withdrawals (probo/wallet/withdrawals.py) hang off it."""

from __future__ import annotations

import asyncpg

from probo import ledger
from probo.auth import AfterCommit
from probo.infra import Settings, connection
from probo.orderbook import Engine, EngineMirror, record_credit
from probo.payments import PaymentProvider
from probo.wallet import store
from probo.wallet.deposits import Deposits
from probo.wallet.types import TransactionPage, Wallet, WalletTransaction
from probo.wallet.withdrawals import Withdrawals
from probo.web import page


class WalletService:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        engine: Engine,
        mirror: EngineMirror,
        provider: PaymentProvider,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._mirror = mirror
        self.provider = provider
        self.deposits = Deposits(settings=settings, pool=pool, mirror=mirror, provider=provider)
        self.withdrawals = Withdrawals(
            settings=settings, pool=pool, engine=engine, mirror=mirror, provider=provider
        )

    async def reconcile_payments(self, every_s: float) -> None:
        """One round of the payments reconciler: deposits, then payouts."""
        await self.deposits.reconcile(every_s)
        await self.withdrawals.reconcile(every_s)

    async def open_wallet(self, conn: asyncpg.Connection, user_id: int) -> AfterCommit:
        """Sign-up hook: the cash account and the signup bonus, in the caller's transaction."""
        account_id = await ledger.open_user_account(conn, user_id)
        credits = []
        bonus = self._settings.signup_bonus
        if bonus > 0:
            [transfer_id] = await ledger.post_transfers(
                conn,
                [
                    ledger.Transfer(
                        ledger.PLATFORM_BONUS_ACCOUNT_ID,
                        account_id,
                        bonus,
                        "signup_bonus",
                        "user",
                        user_id,
                    )
                ],
            )
            credits.append(await record_credit(conn, "INIT_BALANCE", transfer_id, user_id, bonus))

        async def tell_engine() -> None:
            await self._mirror.deliver(credits, new_user_id=user_id)

        return tell_engine

    async def wallet(self, user_id: int) -> Wallet:
        """As committed: the ledger balance, and what the user's open buys hold."""
        async with connection(self._pool) as conn:
            balance, locked = await store.balance_and_locked(conn, user_id)
        return Wallet(balance=balance, locked=locked, available=balance - locked)

    async def transactions(
        self, user_id: int, limit: int, before_id: int | None
    ) -> TransactionPage:
        async with connection(self._pool) as conn:
            account_id = await ledger.user_account_id(conn, user_id)
            if account_id is None:
                return TransactionPage(items=[], next_cursor=None)
            rows = await ledger.user_transfers(
                conn, account_id, before_id=before_id, limit=limit + 1
            )
        rows, cursor = page(rows, limit, lambda r: r["id"])
        items = [
            WalletTransaction(
                id=r["id"],
                kind=r["kind"],
                amount=r["amount"],
                ref=f"{r['ref_type']}:{r['ref_id']}",
                created_at=r["created_at"],
            )
            for r in rows
        ]
        return TransactionPage(items=items, next_cursor=cursor)
