"""Wallet through HTTP: balances, history pagination, idempotent deposits."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import httpx
from litestar import Litestar

from probo.services import services_of
from tests.conftest import bearer, login


def key() -> str:
    return uuid.uuid4().hex


async def test_deposit_credits_once_and_shows_in_history(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar
) -> None:
    token, body = await login(client, outbox_path)
    user_id = body["user"]["id"]
    idempotency_key = key()
    response = await client.post(
        "/api/v1/wallet/deposits",
        json={"amount": 50_000, "idempotency_key": idempotency_key},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    deposit = response.json()
    assert deposit["status"] == "completed"
    assert deposit["amount"] == 50_000
    assert isinstance(deposit["id"], int)
    wallet = (await client.get("/api/v1/wallet", headers=bearer(token))).json()
    assert wallet == {"currency": "INR", "balance": 51_500, "locked": 0, "available": 51_500}
    assert services_of(app).engine.exchange.cash(user_id) == 51_500
    history = (await client.get("/api/v1/wallet/transactions", headers=bearer(token))).json()[
        "items"
    ]
    assert [(t["kind"], t["amount"], t["ref"]) for t in history] == [
        ("deposit", 50_000, f"deposit:{deposit['id']}"),
        ("signup_bonus", 1500, f"user:{user_id}"),
    ]


async def test_same_key_same_body_returns_the_first_deposit(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    token, _ = await login(client, outbox_path)
    body = {"amount": 10_000, "idempotency_key": key()}
    first = await client.post("/api/v1/wallet/deposits", json=body, headers=bearer(token))
    again = await client.post("/api/v1/wallet/deposits", json=body, headers=bearer(token))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert (await client.get("/api/v1/wallet", headers=bearer(token))).json()["balance"] == 11_500


async def test_same_key_different_body_is_a_conflict(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    token, _ = await login(client, outbox_path)
    idempotency_key = key()
    first = await client.post(
        "/api/v1/wallet/deposits",
        json={"amount": 10_000, "idempotency_key": idempotency_key},
        headers=bearer(token),
    )
    assert first.status_code == 201
    other = await client.post(
        "/api/v1/wallet/deposits",
        json={"amount": 20_000, "idempotency_key": idempotency_key},
        headers=bearer(token),
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert (await client.get("/api/v1/wallet", headers=bearer(token))).json()["balance"] == 11_500


async def test_keys_are_per_user(client: httpx.AsyncClient, outbox_path: Path) -> None:
    alice, _ = await login(client, outbox_path)
    bob, _ = await login(client, outbox_path)
    shared = key()
    a = await client.post(
        "/api/v1/wallet/deposits",
        json={"amount": 1000, "idempotency_key": shared},
        headers=bearer(alice),
    )
    b = await client.post(
        "/api/v1/wallet/deposits",
        json={"amount": 2000, "idempotency_key": shared},
        headers=bearer(bob),
    )
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


async def test_twenty_concurrent_identical_deposits_credit_once(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool, app: Litestar
) -> None:
    token, body = await login(client, outbox_path)
    user_id = body["user"]["id"]
    request = {"amount": 77_700, "idempotency_key": key()}
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/wallet/deposits", json=request, headers=bearer(token))
            for _ in range(20)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert (await client.get("/api/v1/wallet", headers=bearer(token))).json()[
        "balance"
    ] == 1500 + 77_700
    transfers = await db.fetchval(
        "SELECT count(*) FROM transfers t JOIN accounts a ON a.id = t.credit_account_id "
        "WHERE a.user_id = $1 AND t.kind = 'deposit'",
        user_id,
    )
    assert transfers == 1
    assert services_of(app).engine.exchange.cash(user_id) == 1500 + 77_700


async def test_concurrent_duplicates_through_separate_pools_credit_once(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool, app: Litestar
) -> None:
    """The in-process wait is one guard; the database row is the other (e.g. another process)."""
    token, body = await login(client, outbox_path)
    user_id = body["user"]["id"]
    wallet_service = services_of(app).wallet
    idempotency_key = key()
    # Bypass the in-flight map to race the database path itself.
    results = await asyncio.gather(
        *(wallet_service.deposits._create(user_id, 5000, idempotency_key) for _ in range(10)),
        return_exceptions=True,
    )
    assert all(not isinstance(r, BaseException) for r in results), results
    assert sum(created for _, created in results) == 1
    assert len({deposit.id for deposit, _ in results}) == 1
    assert await db.fetchval("SELECT balance FROM accounts WHERE user_id = $1", user_id) == 6500
    assert services_of(app).engine.exchange.cash(user_id) == 6500


async def test_history_pages_visit_every_item_once(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    token, _ = await login(client, outbox_path)
    for amount in range(1000, 1000 + 7 * 100, 100):
        response = await client.post(
            "/api/v1/wallet/deposits",
            json={"amount": amount, "idempotency_key": key()},
            headers=bearer(token),
        )
        assert response.status_code == 201
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (
            await client.get("/api/v1/wallet/transactions", params=params, headers=bearer(token))
        ).json()
        assert len(page["items"]) <= 3
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 8  # 7 deposits and the signup bonus
    assert seen == sorted(seen, reverse=True)
    assert len(set(seen)) == 8


async def test_wallet_needs_a_session(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/api/v1/wallet"),
        ("GET", "/api/v1/wallet/transactions"),
        ("POST", "/api/v1/wallet/deposits"),
    ):
        response = await client.request(method, path, json={"amount": 1000, "idempotency_key": "k"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
