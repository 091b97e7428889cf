"""The engine remembers only open orders' and recent client order ids and withdrawal
keys (memory follows open state, not history); a repeat of an older one still returns
the original (SPEC §6, §4), answered from Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from litestar import Litestar

from probo.services import services_of
from tests.e2e.test_withdrawals import verified_trader, withdraw
from tests.trading import (
    Trader,
    create_market,
    engine_differences,
    engine_rebuilt,
    funded_trader,
    metric_value,
)

REMEMBERED = 2  # client order ids and withdrawal keys the engine keeps in these tests
REBUILDS = "probo_engine_rebuilds_total"


@pytest.fixture
def short_memory(app: Litestar) -> Iterator[None]:
    """The engine remembers REMEMBERED ids and keys, now and after a rebuild."""
    engine = services_of(app).engine
    saved = (engine.client_order_ids_recent_max, engine.withdrawal_keys_recent_max)
    engine.bound_memory(REMEMBERED, REMEMBERED)
    try:
        yield
    finally:
        engine.bound_memory(*saved)


async def _placed_and_canceled(trader: Trader, market_id: int, client_order_id: str) -> dict:
    order = await trader.placed(market_id, "yes", "buy", 1, 100, client_order_id=client_order_id)
    canceled = await trader.client.delete(f"/api/v1/orders/{order['id']}", headers=trader.headers)
    assert canceled.status_code == 200, canceled.text
    return order


async def test_an_old_client_order_id_returns_its_original_order(
    client: httpx.AsyncClient,
    outbox_path: Path,
    admin: dict[str, str],
    app: Litestar,
    db: asyncpg.Pool,
    short_memory: None,
) -> None:
    market_id = (await create_market(client, admin))["id"]
    trader = await funded_trader(client, outbox_path)
    first = await _placed_and_canceled(trader, market_id, "long-ago")
    for n in range(3):
        await _placed_and_canceled(trader, market_id, f"since-{n}")
    remembered = services_of(app).engine.exchange.client_order_ids
    assert remembered.order_id(trader.id, "long-ago") is None  # forgotten by the engine

    rebuilds = metric_value((await client.get("/metrics")).text, REBUILDS)
    again = await trader.order(market_id, "yes", "buy", 1, 100, client_order_id="long-ago")
    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["status"]) == (first["id"], "canceled")
    await engine_rebuilt(app)  # the engine had taken it for a new order: undone
    # A second forgotten id of the same user is looked up in Postgres first: no rebuild.
    assert services_of(app).engine.exchange.client_order_ids.order_id(trader.id, "since-0") is None
    repeat = await trader.order(market_id, "yes", "buy", 1, 100, client_order_id="since-0")
    assert repeat.status_code == 200, repeat.text
    assert metric_value((await client.get("/metrics")).text, REBUILDS) == rebuilds + 1

    placed = await db.fetchval(
        "SELECT count(*) FROM orders WHERE user_id = $1 AND client_order_id = 'long-ago'", trader.id
    )
    assert placed == 1
    wallet = await trader.wallet()
    assert (wallet["locked"], wallet["available"]) == (0, wallet["balance"])
    assert await engine_differences(app, db) == []


async def test_an_old_withdrawal_key_returns_its_original_withdrawal(
    client: httpx.AsyncClient,
    outbox_path: Path,
    admin: dict[str, str],
    app: Litestar,
    db: asyncpg.Pool,
    short_memory: None,
) -> None:
    trader = await verified_trader(client, outbox_path, admin, 100_000)
    first = await withdraw(trader, 1_000, "long-ago")
    assert first.status_code == 201, first.text
    for n in range(3):
        assert (await withdraw(trader, 1_000, f"since-{n}")).status_code == 201
    assert services_of(app).engine.withdrawal_keys_remembered <= REMEMBERED
    rebuilds = metric_value((await client.get("/metrics")).text, REBUILDS)
    again = await withdraw(trader, 1_000, "long-ago")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert (await withdraw(trader, 2_000, "long-ago")).status_code == 409
    # Read from Postgres before the engine was asked: nothing to undo.
    assert metric_value((await client.get("/metrics")).text, REBUILDS) == rebuilds
    wallet = await trader.wallet()
    assert wallet["balance"] == 1_500 + 100_000 - 4 * 1_000
    assert await engine_differences(app, db) == []
