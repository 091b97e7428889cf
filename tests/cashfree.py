"""An exchange that takes money through Cashfree — the fake one in tests/fake_cashfree.py,
over real HTTP both ways — for the payments tests: its own database, server and admin,
and the helpers that drive deposits and payouts through it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest_asyncio
from litestar import Litestar

from probo.app import create_app
from probo.ledger import audit_url
from tests.conftest import (
    ADMIN_PHONE,
    bearer,
    create_database,
    drop_database,
    free_port,
    login,
    make_settings,
    serving,
)
from tests.e2e.test_kyc import decide, kyc_body, submit
from tests.fake_cashfree import FakeCashfree, serve_fake_cashfree, signed_headers
from tests.trading import Trader, engine_differences, live_audit

CLIENT_ID = "probo-test-client"
CLIENT_SECRET = "probo-test-secret-0123456789"
RECONCILE_AFTER_S = 2  # PROBO_PAYMENTS_RECONCILE_AFTER_S of the exchange under test
FEE_BPS = 100  # PROBO_WITHDRAWAL_FEE_BPS: 1%
REVIEW_ABOVE = 50_000  # PROBO_WITHDRAWAL_REVIEW_ABOVE, paise
WAIT_POLLS_MAX = 400
WAIT_POLL_S = 0.05
PAYMENT_WEBHOOK = "/api/v1/payments/cashfree/webhook"
PAYOUT_WEBHOOK = "/api/v1/payments/cashfree/payout-webhook"


@dataclass
class CashfreeExchange:
    fake: FakeCashfree
    app: Litestar
    client: httpx.AsyncClient
    db: asyncpg.Pool
    admin: dict[str, str]
    outbox: Path

    async def trader(self, deposit: int = 0, *, verified: bool = False) -> Trader:
        """A new user with the signup bonus, `deposit` paise paid through the fake, and
        verified KYC if asked."""
        token, body = await login(self.client, self.outbox)
        trader = Trader(self.client, token, body["user"]["id"])
        if deposit:
            pending = await self.deposit(trader, deposit)
            await self.fake.pay(pending["checkout"]["order_id"])
            assert (await self.deposit_status(trader, pending["id"])) == "completed"
        if verified:
            kyc = (await submit(self.client, trader.headers, kyc_body())).json()
            assert (await decide(self.client, self.admin, kyc["id"], "VERIFIED")).status_code == 200
        return trader

    async def deposit(self, trader: Trader, amount: int, key: str | None = None) -> dict:
        response = await self.client.post(
            "/api/v1/wallet/deposits",
            json={"amount": amount, "idempotency_key": key or uuid.uuid4().hex},
            headers=trader.headers,
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def deposit_status(self, trader: Trader, deposit_id: int) -> str:
        response = await self.client.get(
            f"/api/v1/wallet/deposits/{deposit_id}", headers=trader.headers
        )
        assert response.status_code == 200, response.text
        return response.json()["status"]

    async def withdraw(self, trader: Trader, amount: int, key: str | None = None) -> httpx.Response:
        return await self.client.post(
            "/api/v1/wallet/withdrawals",
            json={"amount": amount, "idempotency_key": key or uuid.uuid4().hex},
            headers=trader.headers,
        )

    async def withdrawal(self, trader: Trader, withdrawal_id: int) -> dict:
        response = await self.client.get(
            "/api/v1/wallet/withdrawals", params={"limit": 200}, headers=trader.headers
        )
        assert response.status_code == 200, response.text
        [found] = [w for w in response.json()["items"] if w["id"] == withdrawal_id]
        return found

    async def webhook(
        self,
        path: str,
        body: bytes,
        *,
        timestamp_ms: int | None = None,
        secret: str = CLIENT_SECRET,
    ) -> httpx.Response:
        """POST a webhook signed with `secret` (the real one unless a test forges it)."""
        headers = signed_headers(secret, body, timestamp_ms)
        return await self.client.post(path, content=body, headers=headers)

    async def audited(self) -> None:
        """SPEC §3 with the new account and kinds: the ledger's invariants, the live
        engine equal to Postgres, and `payouts_pending` equal to what is owed."""
        assert await engine_differences(self.app, self.db) == []
        assert (await live_audit(self.client, self.admin))["breaches"] == []


async def eventually(probe: Callable[[], Awaitable[object]], expected: object) -> None:
    """Poll `probe()` until it returns `expected` (a few seconds at most)."""
    value = None
    for _ in range(WAIT_POLLS_MAX):
        value = await probe()
        if value == expected:
            return
        await asyncio.sleep(WAIT_POLL_S)
    raise AssertionError(f"still {value!r}, never {expected!r}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest_asyncio.fixture(scope="module")
async def exchange(
    server_urls: tuple[str, str], redis_prefix: str, outbox_path: Path
) -> AsyncIterator[CashfreeExchange]:
    """One exchange per test module, on its own database (the session app's engine stays
    the only one on the session database); audited clean when the module ends."""
    database_url = await create_database(server_urls[0])
    try:
        async with serve_fake_cashfree(CLIENT_ID, CLIENT_SECRET) as fake:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            settings = make_settings(
                database_url,
                server_urls[1],
                f"{redis_prefix}cashfree{port}:",
                outbox_path,
                port=port,
                public_url=base,
                payments_provider="cashfree",
                cashfree_client_id=CLIENT_ID,
                cashfree_client_secret=CLIENT_SECRET,
                cashfree_base_url=fake.pg_base_url,
                cashfree_payout_base_url=fake.payout_base_url,
                payments_reconcile_after_s=RECONCILE_AFTER_S,
                withdrawal_fee_bps=FEE_BPS,
                withdrawal_review_above=REVIEW_ABOVE,
            )
            fake.payout_webhook_url = base + PAYOUT_WEBHOOK
            app = create_app(settings)
            db = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
            try:
                async with serving(app, port) as client:
                    token, _ = await login(client, outbox_path, ADMIN_PHONE)
                    yield CashfreeExchange(fake, app, client, db, bearer(token), outbox_path)
            finally:
                await db.close()
        assert await audit_url(database_url) == []
    finally:
        await drop_database(server_urls[0], database_url)
