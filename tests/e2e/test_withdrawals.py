"""Withdrawals (SPEC §4): KYC first, only available funds, decided by the engine,
written by the ledger writer, idempotent by key."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import assert_error
from tests.e2e.test_kyc import decide, kyc_body, submit
from tests.trading import Trader, create_market, database_cash, funded_trader


async def verified_trader(
    client: httpx.AsyncClient, outbox: Path, admin: dict[str, str], deposit: int
) -> Trader:
    trader = await funded_trader(client, outbox, deposit)
    kyc = (await submit(client, trader.headers, kyc_body())).json()
    assert (await decide(client, admin, kyc["id"], "VERIFIED")).status_code == 200
    return trader


async def withdraw(trader: Trader, amount: int, key: str | None = None) -> httpx.Response:
    return await trader.client.post(
        "/api/v1/wallet/withdrawals",
        json={"amount": amount, "idempotency_key": key or uuid.uuid4().hex},
        headers=trader.headers,
    )


async def test_withdrawal_needs_verified_kyc(client: httpx.AsyncClient, outbox_path: Path) -> None:
    trader = await funded_trader(client, outbox_path, 10_000)
    assert_error(await withdraw(trader, 1000), 403, "kyc_required")
    await submit(client, trader.headers, kyc_body())
    assert_error(await withdraw(trader, 1000), 403, "kyc_required")  # still pending


async def test_withdrawal_moves_money_to_the_bank_once(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    trader = await verified_trader(client, outbox_path, admin, 10_000)
    key = uuid.uuid4().hex
    first = await withdraw(trader, 4000, key)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["amount"], body["status"], body["idempotency_key"]) == (4000, "completed", key)
    again = await withdraw(trader, 4000, key)
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    assert_error(await withdraw(trader, 5000, key), 409, "idempotency_conflict")
    assert await trader.wallet() == {
        "currency": "INR",
        "balance": 7500,
        "locked": 0,
        "available": 7500,
    }
    assert await database_cash(db, trader.id) == 7500
    history = (await client.get("/api/v1/wallet/transactions", headers=trader.headers)).json()[
        "items"
    ]
    assert (history[0]["kind"], history[0]["amount"], history[0]["ref"]) == (
        "withdrawal",
        -4000,
        f"withdrawal:{body['id']}",
    )


async def test_concurrent_duplicates_debit_once(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    trader = await verified_trader(client, outbox_path, admin, 10_000)
    key = uuid.uuid4().hex
    responses = await asyncio.gather(*(withdraw(trader, 3000, key) for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await database_cash(db, trader.id) == 8500


async def test_only_available_funds_can_leave(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    trader = await verified_trader(client, outbox_path, admin, 10_000)  # 11,500 in all
    market = await create_market(client, admin)
    await trader.placed(market["id"], "yes", "buy", 10, 500)  # holds 5,000
    assert_error(await withdraw(trader, 6501), 422, "insufficient_funds")
    assert (await withdraw(trader, 6500)).status_code == 201
    assert await trader.wallet() == {
        "currency": "INR",
        "balance": 5000,
        "locked": 5000,
        "available": 0,
    }
    assert_error(await withdraw(trader, 100), 422, "insufficient_funds")
    assert_error(await withdraw(trader, 0), 422, "validation_error")
    # Racing withdrawals of everything: exactly one gets it.
    await client.delete(
        "/api/v1/orders", params={"market_id": market["id"]}, headers=trader.headers
    )
    responses = await asyncio.gather(*(withdraw(trader, 5000) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [201] + [422] * 4
    assert await database_cash(db, trader.id) == 0
