"""Helpers for tests that trade through the API: markets, funded users, orders, and
the engine-equals-Postgres check (SPEC §3 invariant 5)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from litestar import Litestar
from prometheus_client import REGISTRY

from probo.ledger import EngineState, engine_breaches
from probo.services import services_of
from tests.conftest import bearer, login


async def create_market(client: httpx.AsyncClient, admin: dict[str, str], **fields: object) -> dict:
    body = {
        "title": f"Will test {uuid.uuid4().hex[:6]} pass?",
        "category": "testing",
        "closes_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
        **fields,
    }
    response = await client.post("/api/v1/admin/markets", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


class Trader:
    """A logged-in user with bearer headers."""

    def __init__(self, client: httpx.AsyncClient, token: str, user_id: int) -> None:
        self.client = client
        self.token = token
        self.headers = bearer(token)
        self.id = user_id

    async def order(self, market_id: int, outcome: str, side: str, quantity: int, price: int | None = None,
                    **extra: object) -> httpx.Response:  # fmt: skip
        body: dict[str, object] = {
            "market_id": market_id,
            "outcome": outcome,
            "side": side,
            "type": "market" if price is None else "limit",
            "quantity": quantity,
            **extra,
        }
        if price is not None:
            body["price"] = price
        return await self.client.post("/api/v1/orders", json=body, headers=self.headers)

    async def placed(self, *args: object, **kwargs: object) -> dict:
        response = await self.order(*args, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 201, response.text
        return response.json()

    async def wallet(self) -> dict:
        response = await self.client.get("/api/v1/wallet", headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def portfolio_position(self, market_id: int) -> dict | None:
        response = await self.client.get("/api/v1/portfolio", headers=self.headers)
        assert response.status_code == 200, response.text
        return next((p for p in response.json()["positions"] if p["market_id"] == market_id), None)


async def funded_trader(client: httpx.AsyncClient, outbox: Path, deposit: int = 0) -> Trader:
    """A new user with the signup bonus (1500) plus `deposit` paise."""
    token, body = await login(client, outbox)
    trader = Trader(client, token, body["user"]["id"])
    if deposit:
        response = await client.post(
            "/api/v1/wallet/deposits",
            json={"amount": deposit, "idempotency_key": uuid.uuid4().hex},
            headers=trader.headers,
        )
        assert response.status_code == 201, response.text
    return trader


async def database_position(db: asyncpg.Pool, user_id: int, market_id: int) -> tuple[int, int]:
    row = await db.fetchrow(
        "SELECT yes_quantity, no_quantity FROM positions WHERE user_id = $1 AND market_id = $2",
        user_id,
        market_id,
    )
    return (row["yes_quantity"], row["no_quantity"]) if row else (0, 0)


async def database_cash(db: asyncpg.Pool, user_id: int) -> int:
    return await db.fetchval("SELECT balance FROM accounts WHERE user_id = $1", user_id)


async def escrow(db: asyncpg.Pool, market_id: int) -> int:
    return await db.fetchval("SELECT balance FROM accounts WHERE market_id = $1", market_id)


async def engine_differences(app: Litestar, db: asyncpg.Pool) -> list[str]:
    """SPEC §3 invariant 5 (the engine idle, the writer drained): what differs between
    the engine and Postgres; and the engine's own invariants hold."""
    services_of(app).engine.exchange.validate()
    cash, positions, escrow_by_market, open_orders = services_of(app).engine.state()
    assert await services_of(app).writer.drain(10.0)
    async with db.acquire() as conn:
        breaches = await engine_breaches(
            conn,
            EngineState(
                cash=cash, positions=positions, escrow=escrow_by_market, open_orders=open_orders
            ),
        )
    return [breach.message for breach in breaches]


def ledger_commit_failures() -> float:
    """Ledger batches the writer has failed to commit (and retried), in this process."""
    return REGISTRY.get_sample_value("probo_ledger_commit_failures_total") or 0.0


async def live_audit(client: httpx.AsyncClient, admin: dict[str, str]) -> dict:
    """`GET /api/v1/admin/audit`: SPEC §3 invariants 1-5 against the live engine (call it
    with trading idle); `{"ok": True, "breaches": []}` when the ledger is clean."""
    response = await client.get("/api/v1/admin/audit", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


REBUILD_POLLS_MAX = 500


async def engine_rebuilt(app: Litestar) -> None:
    """Wait until the engine, paused after a refused write, is rebuilt and deciding."""
    for _ in range(REBUILD_POLLS_MAX):
        if not services_of(app).engine.paused:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the engine was not rebuilt")


def metric_value(text: str, name: str) -> float:
    """The sum of the samples of `name` (with its labels, if given) in /metrics text."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))
