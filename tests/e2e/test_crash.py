"""SIGKILL under load (SPEC §7): a `probo serve` process is killed while many clients
trade, then restarted on the same database. Every order that was answered 201 is
there with its fills, `probo audit` passes, and the restarted engine equals Postgres
(invariant 5)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import (
    ROOT,
    bearer,
    free_port,
    last_otp,
    new_phone,
)
from tests.trading import Trader, create_market

READY_TIMEOUT_S = 60
TRADERS = 12
WORKERS_PER_TRADER = 3
ACKS_BEFORE_KILL = 300
LOAD_TIMEOUT_S = 60


class Server:
    """`probo serve` in a child process on a given database."""

    def __init__(self, database_url: str, redis_url: str, redis_prefix: str, workdir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.outbox = workdir / "outbox.jsonl"
        self.admin_phone = new_phone()
        self.log = workdir / "serve.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PROBO_")}
        self.env.update(
            PROBO_DATABASE_URL=database_url,
            PROBO_REDIS_URL=redis_url,
            PROBO_REDIS_KEY_PREFIX=redis_prefix,
            PROBO_PORT=str(self.port),
            PROBO_DATA_DIR=str(workdir / "data"),
            PROBO_JWT_SECRET="crash-test-secret-" + "x" * 32,  # tokens outlive the restart
            PROBO_COOKIE_SECURE="false",
            PROBO_SMS_OUTBOX=str(self.outbox),
            PROBO_ADMIN_PHONES=self.admin_phone,
            PROBO_ORDER_RATE_LIMIT="100000",
            PROBO_AUTH_IP_RATE_LIMIT="1000000",
            PROBO_AUTH_VERIFY_IP_RATE_LIMIT="1000000",
            PROBO_OTP_RESEND_COOLDOWN_S="0",
            PROBO_LOG_LEVEL="WARNING",
            PROBO_DEMO="false",
        )
        self.process: subprocess.Popen | None = None

    def _spawn(self) -> subprocess.Popen:
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "probo", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    async def start(self) -> None:
        self.process = await asyncio.to_thread(self._spawn)
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(base_url=self.base, timeout=1) as http:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, f"serve exited: {self.log.read_text()[-3000:]}"
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        self.process.kill()
        raise AssertionError(f"serve did not become ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def database(scratch_database: str) -> str:
    return scratch_database


async def _login(http: httpx.AsyncClient, server: Server, phone: str) -> tuple[str, int]:
    assert (await http.post("/api/v1/auth/otp", json={"phone": phone})).status_code == 202
    response = await http.post(
        "/api/v1/auth/verify", json={"phone": phone, "otp": last_otp(server.outbox, phone)}
    )
    assert response.status_code == 200, response.text
    return response.json()["token"], response.json()["user"]["id"]


async def _trade_until_killed(
    trader: Trader,
    market_ids: list[int],
    acked: list[dict],
    enough: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    """Place orders (about a third crossing) until the server goes away; keep every 201."""
    rng = random.Random()
    while not stop.is_set():
        outcome = rng.choice(("yes", "no"))
        price = (
            rng.choice((400, 450, 500, 550))
            if rng.random() < 0.35
            else rng.choice((100, 150, 200, 250))
        )
        try:
            response = await trader.order(
                rng.choice(market_ids),
                outcome,
                "buy",
                rng.randint(1, 5),
                price,
                client_order_id=uuid.uuid4().hex,
            )
        except httpx.TransportError:
            return  # killed
        if response.status_code == 201:
            acked.append({**response.json(), "user_id": trader.id, "headers": trader.headers})
            if len(acked) >= ACKS_BEFORE_KILL:
                enough.set()
        else:
            assert response.status_code in (422, 503), response.text


@pytest.mark.slow
async def test_sigkill_under_load_loses_nothing_acknowledged(
    database: str, server_urls: tuple[str, str], redis_prefix: str, tmp_path: Path
) -> None:
    server = Server(database, server_urls[1], redis_prefix + "crash:", tmp_path)
    await server.start()
    try:
        limits = httpx.Limits(max_connections=TRADERS * WORKERS_PER_TRADER + 4, keepalive_expiry=2)
        async with httpx.AsyncClient(base_url=server.base, timeout=30, limits=limits) as http:
            admin_token, _ = await _login(http, server, server.admin_phone)
            market_ids = [(await create_market(http, bearer(admin_token)))["id"] for _ in range(3)]
            traders = []
            for _ in range(TRADERS):
                token, user_id = await _login(http, server, new_phone())
                trader = Trader(http, token, user_id)
                deposit = await http.post(
                    "/api/v1/wallet/deposits",
                    json={"amount": 5_000_000, "idempotency_key": uuid.uuid4().hex},
                    headers=trader.headers,
                )
                assert deposit.status_code == 201, deposit.text
                traders.append(trader)

            acked: list[dict] = []
            enough, stop = asyncio.Event(), asyncio.Event()
            workers = [
                asyncio.create_task(_trade_until_killed(t, market_ids, acked, enough, stop))
                for t in traders
                for _ in range(WORKERS_PER_TRADER)
            ]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(enough.wait(), LOAD_TIMEOUT_S)
            server.kill()  # mid-flight: requests are queued, batches are being written
            stop.set()
            await asyncio.gather(*workers)
        assert len(acked) >= ACKS_BEFORE_KILL, (
            f"only {len(acked)} orders acknowledged before the deadline"
        )

        await server.start()
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            db = await asyncpg.connect(database)
            try:
                for order in acked:
                    row = await db.fetchrow(
                        "SELECT user_id, client_order_id, filled_quantity FROM orders WHERE id = $1",
                        order["id"],
                    )
                    assert row is not None, f"acknowledged order {order['id']} is missing"
                    assert (row["user_id"], row["client_order_id"]) == (
                        order["user_id"],
                        order["client_order_id"],
                    )
                    assert row["filled_quantity"] >= order["filled_quantity"]
                    acked_trades = {f["trade_id"] for f in order["fills"]}
                    if acked_trades:
                        found = await db.fetch(
                            "SELECT id FROM trades WHERE id = ANY($1::bigint[])", list(acked_trades)
                        )
                        assert {r["id"] for r in found} == acked_trades, (
                            f"fills of order {order['id']} lost"
                        )
            finally:
                await db.close()
            # The restarted server answers for them too, and keeps trading.
            sample = acked[-1]
            response = await http.get(f"/api/v1/orders/{sample['id']}", headers=sample["headers"])
            assert response.status_code == 200
            assert response.json()["client_order_id"] == sample["client_order_id"]
            admin_token, _ = await _login(http, server, server.admin_phone)
            audit = await http.get("/api/v1/admin/audit", headers=bearer(admin_token))
            assert audit.status_code == 200, audit.text
            assert audit.json() == {"ok": True, "breaches": []}
            again = await http.post(
                "/api/v1/orders",
                json={
                    "market_id": market_ids[0],
                    "outcome": "yes",
                    "side": "buy",
                    "type": "limit",
                    "price": 100,
                    "quantity": 1,
                },
                headers=sample["headers"],
            )
            assert again.status_code == 201, again.text
    finally:
        server.stop()
    audit = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "probo",
        "audit",
        env=server.env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await asyncio.wait_for(audit.communicate(), 60)
    assert audit.returncode == 0, output.decode()


HOLDER_PAIRS = 30
SETTLEMENT_FEE_BPS = 100
RESOLVED_WITHIN_S = 15


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["with-the-payouts-held-back", "soon-after-asking"])
async def test_sigkill_during_settlement_pays_everyone_exactly_once(
    database: str, server_urls: tuple[str, str], redis_prefix: str, tmp_path: Path, kill: str
) -> None:
    """The server is killed while a resolution is on its way; after the restart the
    market is resolved (by the restart finishing it, or by the admin asking again, as
    one would who got no answer) and every holder was paid exactly once.

    `with-the-payouts-held-back`: a lock on the escrow account holds the payout batch
    until the resolution is recorded and the server killed, so the restart must finish
    it. `soon-after-asking`: killed 2 ms after the request, wherever it got to."""
    server = Server(database, server_urls[1], redis_prefix + "settle:", tmp_path)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            admin_token, _ = await _login(http, server, server.admin_phone)
            admin = bearer(admin_token)
            market = (await create_market(http, admin, settlement_fee_bps=SETTLEMENT_FEE_BPS))["id"]
            holdings: dict[int, tuple[Trader, int, int]] = {}  # user id -> trader, YES, NO
            for pair in range(HOLDER_PAIRS):
                quantity = 1 + pair % 3
                traders = []
                for _ in range(2):
                    token, user_id = await _login(http, server, new_phone())
                    traders.append(Trader(http, token, user_id))
                yes, no = traders
                await yes.placed(market, "yes", "buy", quantity, 500)
                await no.placed(market, "no", "buy", quantity, 500)  # mint
                holdings[yes.id] = (yes, quantity, 0)
                holdings[no.id] = (no, 0, quantity)
            before = {
                user_id: (await t.wallet())["balance"] for user_id, (t, _, _) in holdings.items()
            }
            blocker = await asyncpg.connect(database)
            try:
                if kill == "with-the-payouts-held-back":
                    await blocker.execute("BEGIN")
                    await blocker.execute(
                        "SELECT 1 FROM accounts WHERE market_id = $1 FOR UPDATE", market
                    )
                resolving = asyncio.create_task(
                    http.post(
                        f"/api/v1/admin/markets/{market}/resolve",
                        json={"outcome": "yes"},
                        headers=admin,
                    )
                )
                if kill == "with-the-payouts-held-back":
                    while not await blocker.fetchval(  # noqa: ASYNC110 (polling Postgres)
                        "SELECT resolving IS NOT NULL FROM markets WHERE id = $1", market
                    ):
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(0.2)  # the payout batch is waiting on the lock
                else:
                    await asyncio.sleep(0.002)
                server.kill()
                if kill == "with-the-payouts-held-back":
                    # The killed server's batch still waits in its Postgres backend, which
                    # would commit it once the lock goes: end it, as a crash of the
                    # database host would, so that the restart has to finish the job.
                    await blocker.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                        "AND application_name = 'probo-ledger-writer'"
                    )
            finally:
                await blocker.close()  # the held transaction rolls back
            with contextlib.suppress(httpx.TransportError):
                await resolving

        await server.start()
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            admin_token, _ = await _login(http, server, server.admin_phone)
            admin = bearer(admin_token)
            deadline = time.monotonic() + RESOLVED_WITHIN_S
            status = None
            asked_again = False
            while time.monotonic() < deadline:
                db = await asyncpg.connect(database)
                try:
                    row = await db.fetchrow(
                        "SELECT status, resolving FROM markets WHERE id = $1", market
                    )
                finally:
                    await db.close()
                status = row["status"]
                if status == "resolved":
                    break
                if row["resolving"] is None:  # killed before the resolution was recorded
                    again = await http.post(
                        f"/api/v1/admin/markets/{market}/resolve",
                        json={"outcome": "yes"},
                        headers=admin,
                    )
                    assert again.status_code == 200, again.text
                    asked_again = True
                await asyncio.sleep(0.1)
            assert status == "resolved"
            if kill == "with-the-payouts-held-back":
                assert not asked_again  # the restart finished the recorded resolution
            for user_id, (trader, yes, _) in holdings.items():
                gross = yes * 1000
                fee = gross * SETTLEMENT_FEE_BPS // 10_000
                wallet = await http.get("/api/v1/wallet", headers=trader.headers)
                assert wallet.json()["balance"] == before[user_id] + gross - fee, user_id
            db = await asyncpg.connect(database)
            try:
                paid = await db.fetch(
                    "SELECT credit_account_id, count(*) AS n FROM transfers "
                    "WHERE kind = 'payout' AND ref_id = $1 GROUP BY 1",
                    market,
                )
                assert len(paid) == HOLDER_PAIRS and {r["n"] for r in paid} == {1}
                assert (
                    await db.fetchval("SELECT balance FROM accounts WHERE market_id = $1", market)
                    == 0
                )
            finally:
                await db.close()
            audit = await http.get("/api/v1/admin/audit", headers=admin)
            assert audit.json() == {"ok": True, "breaches": []}
    finally:
        server.stop()
