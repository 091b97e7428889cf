"""A write Postgres refuses (SPEC §7; a bug the edge should have stopped): the one
request is answered with an error, the exchange keeps trading on every market,
nothing acknowledged is lost, and the ledger and the engine still agree."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest_asyncio
from litestar import Litestar

from tests.conftest import assert_error
from tests.refusals import ACCEPT_POISONED_ORDERS, POISON_PREFIX, REFUSE_POISONED_ORDERS
from tests.trading import (
    create_market,
    engine_differences,
    engine_rebuilt,
    funded_trader,
    live_audit,
    metric_value,
)


@pytest_asyncio.fixture
async def poisoned(db: asyncpg.Pool) -> AsyncIterator[None]:
    await db.execute(REFUSE_POISONED_ORDERS)
    try:
        yield
    finally:
        await db.execute(ACCEPT_POISONED_ORDERS)


async def test_a_refused_order_fails_alone_and_trading_goes_on(
    client: httpx.AsyncClient,
    outbox_path: Path,
    admin: dict[str, str],
    app: Litestar,
    db: asyncpg.Pool,
    poisoned: None,
) -> None:
    metrics_before = (await client.get("/metrics")).text
    market_a = (await create_market(client, admin))["id"]
    market_b = (await create_market(client, admin))["id"]
    a1, a2, b1, b2 = [await funded_trader(client, outbox_path, 100_000) for _ in range(4)]
    resting = await a1.placed(market_a, "yes", "buy", 5, 400)  # acknowledged before

    poison, *others = await asyncio.gather(
        a1.order(market_a, "yes", "buy", 3, 450, client_order_id=f"{POISON_PREFIX}-1"),
        b1.order(market_b, "yes", "buy", 2, 600),
        b2.order(market_b, "no", "buy", 2, 400),
        a2.order(market_a, "no", "buy", 1, 500),
    )
    assert_error(poison, 500, "internal_error")
    b_yes, b_no, a_after = others
    # Market B's users never touched market A: their orders commit and trade.
    assert b_yes.status_code == 201, b_yes.text
    assert b_no.status_code == 201, b_no.text
    assert b_no.json()["status"] == "filled"
    # Decided after the refused order on its market, it may have been undone: safe to retry.
    if a_after.status_code != 201:
        assert_error(a_after, 503, "unavailable")
        assert a_after.headers["Retry-After"] == "1"
    await engine_rebuilt(app)

    # Market A trades again, against the order acknowledged before.
    taker = await a2.placed(market_a, "no", "buy", 5, 600)
    assert taker["fills"] and taker["fills"][0]["price"] == 600
    first = await client.get(f"/api/v1/orders/{resting['id']}", headers=a1.headers)
    assert (first.json()["status"], first.json()["filled_quantity"]) == ("filled", 5)
    mine = await client.get("/api/v1/orders", params={"market_id": market_a}, headers=a1.headers)
    assert [o["id"] for o in mine.json()["items"]] == [resting["id"]]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM orders WHERE client_order_id = $1", f"{POISON_PREFIX}-1"
        )
        == 0
    )

    assert await engine_differences(app, db) == []
    assert (await live_audit(client, admin))["breaches"] == []
    metrics_after = (await client.get("/metrics")).text
    for name in (
        'probo_ledger_entries_not_recorded_total{reason="refused"}',
        "probo_engine_rebuilds_total",
    ):
        assert metric_value(metrics_after, name) == metric_value(metrics_before, name) + 1, name
