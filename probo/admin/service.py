"""Back-office use cases: find users and see their money, suspend them, browse the
ledger, the exchange's figures.

Suspension is auth's (the flag, every session revoked) and trading's (every open order
canceled through the engine, answered after the cancels commit); this service puts
the two in order: the flag first, so nothing the user sends afterwards is taken.
"""

from __future__ import annotations

import re

import asyncpg

from probo.admin import store
from probo.admin.types import (
    AccountOwner,
    AdminTransfer,
    AdminTransferPage,
    AdminUser,
    AdminUserDetail,
    AdminUserPage,
    Stats,
)
from probo.auth import AuthService
from probo.infra import connection
from probo.ledger import PLATFORM_FEES_ACCOUNT_ID
from probo.trading import TradingService
from probo.wallet import WalletService
from probo.web import BIGINT_MAX, not_found, page

RECENT_TRANSACTIONS_SHOWN = 20
OPEN_ORDERS_SHOWN_MAX = 200
NAME_QUERY = re.compile(r"^[A-Za-z0-9_]{1,20}$")
PHONE_QUERY = re.compile(r"^\+?[0-9]{1,15}$")


def _user(row: asyncpg.Record) -> AdminUser:
    return AdminUser(**{key: row[key] for key in AdminUser.__struct_fields__})


def _owner(row: asyncpg.Record, side: str) -> AccountOwner:
    return AccountOwner(
        kind=row[f"{side}_kind"] or "unknown",
        user_id=row[f"{side}_user_id"],
        market_id=row[f"{side}_market_id"],
    )


class AdminService:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        auth: AuthService,
        trading: TradingService,
        wallet: WalletService,
    ) -> None:
        self._pool = pool
        self._auth = auth
        self._trading = trading
        self._wallet = wallet

    # --- users ---------------------------------------------------------------------------

    async def users(self, q: str | None, limit: int, before_id: int | None) -> AdminUserPage:
        """`q` matches a user id exactly, a phone by prefix (a bare number also as +91…),
        or a display name by prefix whatever the case; no `q`: every user."""
        user_id, phone_prefixes, name_prefix = None, [], None
        query = (q or "").strip()
        if query:
            if query.isdigit() and 0 < int(query) <= BIGINT_MAX:
                user_id = int(query)
            if PHONE_QUERY.match(query):
                digits = query.lstrip("+")
                phone_prefixes = (
                    ["+" + digits] if query.startswith("+") else ["+" + digits, "+91" + digits]
                )
            if NAME_QUERY.match(query):
                name_prefix = query
            if user_id is None and not phone_prefixes and name_prefix is None:
                return AdminUserPage(items=[], next_cursor=None)  # matches nothing there is
        async with connection(self._pool) as conn:
            rows = await store.users(
                conn,
                user_id=user_id,
                phone_prefixes=phone_prefixes,
                name_prefix=name_prefix,
                before_id=before_id,
                limit=limit + 1,
            )
        rows, cursor = page(rows, limit, lambda r: r["id"])
        return AdminUserPage(items=[_user(r) for r in rows], next_cursor=cursor)

    async def _user_view(self, user_id: int) -> AdminUser:
        async with connection(self._pool) as conn:
            row = await store.user(conn, user_id)
        if row is None:
            raise not_found("user")
        return _user(row)

    async def user(self, user_id: int) -> AdminUserDetail:
        view = await self._user_view(user_id)
        portfolio = await self._trading.portfolio(user_id)
        orders = await self._trading.orders(
            user_id,
            status="open",
            market_id=None,
            client_order_id=None,
            limit=OPEN_ORDERS_SHOWN_MAX,
            before_id=None,
        )
        transactions = await self._wallet.transactions(user_id, RECENT_TRANSACTIONS_SHOWN, None)
        return AdminUserDetail(
            **{key: getattr(view, key) for key in AdminUser.__struct_fields__},
            positions=portfolio.positions,
            open_orders=orders.items,
            recent_transactions=transactions.items,
        )

    async def suspend(self, user_id: int, *, admin_id: int) -> AdminUser:
        """Suspend: no request of the user's is taken from now on, their sessions are
        revoked (live user channels end), and their open orders are canceled in every
        market. Again on a suspended user: the cancels run again (after a failed one)."""
        await self._auth.set_suspended(user_id, True, admin_id=admin_id)
        await self._trading.cancel_all(user_id, None)
        return await self._user_view(user_id)

    async def unsuspend(self, user_id: int, *, admin_id: int) -> AdminUser:
        await self._auth.set_suspended(user_id, False, admin_id=admin_id)
        return await self._user_view(user_id)

    # --- the ledger ----------------------------------------------------------------------

    async def transfers(
        self,
        *,
        kind: str | None,
        user_id: int | None,
        market_id: int | None,
        limit: int,
        before_id: int | None,
    ) -> AdminTransferPage:
        async with connection(self._pool) as conn:
            account_id = escrow_id = None
            if user_id is not None:
                account_id = await store.cash_account_id(conn, user_id)
                if account_id is None:  # no such user (or no wallet): nothing moved
                    return AdminTransferPage(items=[], next_cursor=None)
            if market_id is not None:
                escrow_id = await store.escrow_account_id(conn, market_id)
            rows = await store.transfers(
                conn,
                kind=kind,
                account_id=account_id,
                market_id=market_id,
                escrow_id=escrow_id,
                before_id=before_id,
                limit=limit + 1,
            )
        rows, cursor = page(rows, limit, lambda r: r["id"])
        items = [
            AdminTransfer(
                id=r["id"],
                debit_account_id=r["debit_account_id"],
                credit_account_id=r["credit_account_id"],
                amount=r["amount"],
                kind=r["kind"],
                ref=f"{r['ref_type']}:{r['ref_id']}",
                created_at=r["created_at"],
                debit_account=_owner(r, "debit"),
                credit_account=_owner(r, "credit"),
            )
            for r in rows
        ]
        return AdminTransferPage(items=items, next_cursor=cursor)

    # --- figures -------------------------------------------------------------------------

    async def stats(self) -> Stats:
        async with connection(self._pool) as conn:
            row = await store.stats(conn, PLATFORM_FEES_ACCOUNT_ID)
        return Stats(**{key: row[key] for key in Stats.__struct_fields__})
