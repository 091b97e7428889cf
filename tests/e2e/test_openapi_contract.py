"""The published OpenAPI document is the contract (SPEC §9, §10).

schemathesis, knowing only /schema/openapi.json, generates requests for every operation
(the document's examples, boundary and negative cases, then random ones) and sends them
over HTTP to the suite's server, once with a user's token and once, for the admin
operations, with an admin's. Every answer must be a non-5xx, with a status the document
lists for that operation, of the documented media type, schema and headers. Generated
orders must be able to succeed: the order example names a market the set-up opens (tick
1, so every price the schema allows is on tick) and the user has money; at least one
generated order must be accepted.

The document's own shape is checked too: every error is the shared error body, never
litestar's; routes that take input list 400 (and 413, 422 for a body); 429 and 503 name
Retry-After; the order request is a discriminated union as strict as the server.

Left out of the fuzzing, because they cannot be fuzzed meaningfully:
- `POST /api/v1/auth/logout`: it revokes the token the whole run authenticates with.
- `POST /api/v1/auth/logout-all`, `POST /api/v1/auth/refresh` and
  `DELETE /api/v1/auth/sessions/{session_id}`: the same (tests/e2e/test_sessions.py).
- `POST /api/v1/admin/users/{user_id}/suspend`: it would suspend users of other tests
  at random (tests/e2e/test_backoffice.py).
- `GET /api/v1/ws`: a WebSocket; it is not in the document (tests/e2e/test_realtime.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx

from probo.trading.api import ORDER_EXAMPLE
from probo.web import BIGINT_MAX
from tests.conftest import assert_error
from tests.trading import create_market, funded_trader

EXAMPLE_MARKET_ID: int = ORDER_EXAMPLE.value["market_id"]  # type: ignore[index]
DEPOSITS = 3  # of the largest deposit each: room for many generated buys
DEPOSIT_MAX = 10_000_000
# Not `positive_data_acceptance`: a schema-valid request may still be refused by a rule
# the SPEC fixes (422 insufficient_funds, invalid_price off the tick, an opaque cursor
# that is not ours), and JSON Schema's "integer" admits 1.0, which SPEC §10 refuses.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",  # the server enforces every constraint the document states
        "missing_required_header",
        "unsupported_method",  # methods the document does not list answer 405
    ]
)
# Per operation in the fuzzing phase; a fixed seed, so every run of the suite sees the same
# cases. PROBO_CONTRACT_MAX_EXAMPLES and PROBO_CONTRACT_SEED explore further.
MAX_EXAMPLES = int(os.environ.get("PROBO_CONTRACT_MAX_EXAMPLES", "20"))
SEED = os.environ.get("PROBO_CONTRACT_SEED", "20261207")
RUN_TIMEOUT_S = 300
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}
METHODS = ("get", "put", "post", "delete", "patch")


async def open_example_market(
    client: httpx.AsyncClient, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    """The market the published order example names: open, tick 1."""
    existing = await client.get(f"/api/v1/markets/{EXAMPLE_MARKET_ID}")
    if existing.status_code == 200:
        assert (existing.json()["status"], existing.json()["tick"]) == ("open", 1)
        return
    # Market ids come from an identity column: move it forward to the example's id.
    assert await db.fetchval("SELECT coalesce(max(id), 0) FROM markets") < EXAMPLE_MARKET_ID
    await db.execute(
        "SELECT setval(pg_get_serial_sequence('markets', 'id'), $1, false)", EXAMPLE_MARKET_ID
    )
    market = await create_market(client, admin, tick=1)
    assert market["id"] == EXAMPLE_MARKET_ID


async def schemathesis(base_url: str, token: str, workdir: Path, *options: str) -> tuple[int, str]:
    """Run the schemathesis CLI against the server; (exit code, output). Its cache goes
    under `workdir`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url}/schema/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        SEED,
        "--workers",
        "1",
        "--exclude-path",
        "/api/v1/auth/logout",
        "--exclude-path",
        "/api/v1/auth/logout-all",
        "--exclude-path",
        "/api/v1/auth/refresh",
        "--exclude-path",
        "/api/v1/auth/sessions/{session_id}",
        "--exclude-path",
        "/api/v1/admin/users/{user_id}/suspend",
        # Hypothesis's health checks judge generation speed, not the API: a slow draw on
        # one operation must not end the run.
        "--suppress-health-check",
        "all",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=workdir,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def report(output: str) -> str:
    """The run's failures, if any, and its summary (test-case counts), without the progress."""
    lines = output.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if re.fullmatch(r"=+ (FAILURES|SUMMARY) =+", line)), 0
    )
    return "\n".join(lines[start:])


async def test_schemathesis_finds_no_failure_and_generated_orders_trade(
    client: httpx.AsyncClient,
    outbox_path: Path,
    admin: dict[str, str],
    admin_login: tuple[str, dict],
    db: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    await open_example_market(client, admin, db)
    trader = await funded_trader(client, outbox_path)
    for _ in range(DEPOSITS):
        response = await client.post(
            "/api/v1/wallet/deposits",
            json={"amount": DEPOSIT_MAX, "idempotency_key": uuid.uuid4().hex},
            headers=trader.headers,
        )
        assert response.status_code == 201, response.text
    admin_token, _ = admin_login
    orders_before = await db.fetchval("SELECT coalesce(max(id), 0) FROM orders")
    base_url = str(client.base_url).rstrip("/")

    code, output = await schemathesis(base_url, trader.token, tmp_path)
    print(report(output))
    assert code == 0, report(output)
    code, output = await schemathesis(base_url, admin_token, tmp_path, "--include-tag", "admin")
    print(report(output))
    assert code == 0, report(output)

    accepted = await db.fetchval(
        "SELECT count(*) FROM orders WHERE id > $1 AND user_id = $2", orders_before, trader.id
    )
    print(f"generated orders accepted: {accepted}")
    assert accepted > 0


# --- the document itself ---------------------------------------------------------------


async def published(client: httpx.AsyncClient) -> dict:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()


def operations(document: dict) -> list[tuple[str, dict]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


async def test_every_documented_error_is_the_error_body(client: httpx.AsyncClient) -> None:
    document = await published(client)
    assert document["components"]["schemas"]["ErrorDetail"]["required"] == ["code", "message"]
    for name, operation in operations(document):
        errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
        for status, response in errors.items():
            assert response["content"]["application/json"]["schema"] == ERROR_BODY, (name, status)
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= set(errors), name
        if operation.get("parameters"):
            assert "400" in errors, name
        for status in {"429", "503"} & set(errors):
            assert "Retry-After" in errors[status]["headers"], (name, status)
    assert '"status_code"' not in json.dumps(document)  # litestar's error body


async def test_the_order_request_is_as_strict_as_the_server(client: httpx.AsyncClient) -> None:
    document = await published(client)
    schemas = document["components"]["schemas"]
    body = document["paths"]["/api/v1/orders"]["post"]["requestBody"]["content"]
    union = body["application/json"]["schema"]
    assert union["discriminator"] == {
        "propertyName": "type",
        "mapping": {
            "limit": "#/components/schemas/LimitOrderRequest",
            "market": "#/components/schemas/MarketOrderRequest",
        },
    }
    assert union["examples"][0] == ORDER_EXAMPLE.value
    limit, market = schemas["LimitOrderRequest"], schemas["MarketOrderRequest"]
    assert "price" in limit["required"] and market["properties"]["price"] == {"type": "null"}
    assert (limit["properties"]["price"]["minimum"], limit["properties"]["price"]["maximum"]) == (
        1,
        999,
    )
    assert [v for v in market["properties"]["time_in_force"]["enum"] if v] == ["ioc"]
    assert limit["properties"]["market_id"]["maximum"] == BIGINT_MAX  # exact, not a float
    assert limit["properties"]["client_order_id"]["pattern"] == r"^[^\x00]*$"
    assert limit["additionalProperties"] is False and market["additionalProperties"] is False
    amount = schemas["DepositRequest"]["properties"]["amount"]
    assert (amount["minimum"], amount["maximum"]) == (100, 10_000_000)


async def test_an_unknown_document_path_is_the_error_body(client: httpx.AsyncClient) -> None:
    for path in ("/schema/nothing", "/schema/nothing.json"):
        assert_error(await client.get(path), 404, "not_found")
