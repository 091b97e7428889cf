"""Text Postgres cannot store is refused at the edge (SPEC §9), never taken by the engine.

An outside tester's report: an order whose `client_order_id` held U+0000 was accepted,
its ledger batch refused by Postgres (`invalid byte sequence for encoding "UTF8": 0x00`),
and the writer wedged the exchange. tests/property/test_edge_values.py covers every
field of every engine command; these are the reported cases, spelled out.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from litestar import Litestar

from probo.services import services_of
from tests.conftest import assert_error
from tests.e2e.test_withdrawals import verified_trader, withdraw
from tests.trading import create_market, funded_trader, ledger_commit_failures


async def test_a_nul_in_client_order_id_is_422_and_the_next_order_trades(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str], app: Litestar
) -> None:
    failures_before = ledger_commit_failures()
    market = (await create_market(client, admin))["id"]
    buyer = await funded_trader(client, outbox_path, 10_000)
    seller = await funded_trader(client, outbox_path, 10_000)

    refused = await buyer.order(market, "yes", "buy", 2, 500, client_order_id="a\u0000b")
    assert_error(refused, 422, "validation_error")

    await buyer.placed(market, "yes", "buy", 2, 500, client_order_id="a-b")
    trade = await seller.placed(market, "no", "buy", 2, 500)
    assert (trade["status"], trade["filled_quantity"]) == ("filled", 2)
    assert ledger_commit_failures() == failures_before
    assert services_of(app).writer.stalled_since is None


async def test_a_nul_in_a_withdrawal_key_is_422_and_the_next_withdrawal_commits(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str], app: Litestar
) -> None:
    failures_before = ledger_commit_failures()
    trader = await verified_trader(client, outbox_path, admin, 10_000)

    assert_error(await withdraw(trader, 1_000, "key\u0000"), 422, "validation_error")

    committed = await withdraw(trader, 1_000, uuid.uuid4().hex)
    assert committed.status_code == 201, committed.text
    assert (await trader.wallet())["balance"] == 1_500 + 10_000 - 1_000
    assert ledger_commit_failures() == failures_before
    assert services_of(app).writer.stalled_since is None


async def test_client_text_in_a_query_filter_must_be_storable(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    trader = await funded_trader(client, outbox_path)
    for path in (
        "/api/v1/orders?client_order_id=a%00b",
        "/api/v1/markets?category=%00",
        "/api/v1/orders?cursor=%00",
    ):
        assert_error(await client.get(path, headers=trader.headers), 400, "validation_error")
    # Bytes that are not UTF-8 arrive as U+FFFD, which Postgres stores: not an error.
    response = await client.get("/api/v1/markets?category=%ED%A0%80")
    assert response.status_code == 200, response.text


async def test_text_fields_refuse_nul_before_any_statement(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for field in ("title", "description", "category", "rules"):
        body = {
            "title": "Will it rain?",
            "closes_at": "2099-01-01T00:00:00+00:00",
            field: "bad\u0000text",
        }
        response = await client.post("/api/v1/admin/markets", json=body, headers=admin)
        assert_error(response, 422, "validation_error")
