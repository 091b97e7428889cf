"""Outside credits reach the engine: directly after commit, or later by the reconciler
when the engine could not take them; login and deposits never fail because of it.
Redis being away stops logins (503) but not sessions or wallet reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from litestar import Litestar
from prometheus_client import REGISTRY

from probo.app import create_app
from probo.ledger import audit_url
from probo.services import services_of
from tests.conftest import bearer, create_database, drop_database, login, make_settings, serving

RECONCILE_WAIT_S = 10.0


@pytest_asyncio.fixture
async def own_app(
    server_urls: tuple[str, str], redis_prefix: str, outbox_path: Path
) -> AsyncIterator[Litestar]:
    """An app on a database of its own, so no other app's reconciler takes its credits."""
    url = await create_database(server_urls[0])
    try:
        yield create_app(make_settings(url, server_urls[1], redis_prefix, outbox_path))
        assert await audit_url(url) == []
    finally:
        await drop_database(server_urls[0], url)


def _mirror_failures() -> float:
    return REGISTRY.get_sample_value("probo_engine_mirror_failures_total") or 0.0


async def _eventually(predicate, timeout_s: float = RECONCILE_WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_credits_missed_while_the_engine_recovers_are_applied_by_the_reconciler(
    own_app: Litestar, outbox_path: Path
) -> None:
    async with serving(own_app) as client:
        engine = services_of(own_app).engine
        failures_before = _mirror_failures()
        engine.ready = False  # as during start-up recovery: the engine takes no commands
        started = time.monotonic()
        token, body = await login(client, outbox_path)
        deposit = await client.post(
            "/api/v1/wallet/deposits",
            json={"amount": 4_000, "idempotency_key": "mirror-1"},
            headers=bearer(token),
        )
        elapsed = time.monotonic() - started
        user_id = body["user"]["id"]
        # Both succeeded although the engine refused; each waited at most ~1 s for it.
        assert deposit.status_code == 201
        assert elapsed < 5
        assert _mirror_failures() == failures_before + 2
        assert engine.exchange.cash(user_id) == 0
        pending = await services_of(own_app).pool.fetchval(
            "SELECT count(*) FROM engine_credit_outbox WHERE user_id = $1", user_id
        )
        assert pending == 2

        engine.ready = True

        async def engine_has_both() -> bool:
            return engine.exchange.cash(user_id) == 1_500 + 4_000

        assert await _eventually(engine_has_both)
        assert await _eventually(lambda: _outbox_empty(own_app, user_id)), (
            "the reconciler clears what it applied"
        )
        # Applying again is impossible: the transfer ids are remembered until the rows go.
        await services_of(own_app).mirror.reconcile_once(grace_s=0)
        assert engine.exchange.cash(user_id) == 5_500


async def _outbox_empty(app: Litestar, user_id: int) -> bool:
    return (
        await services_of(app).pool.fetchval(
            "SELECT count(*) FROM engine_credit_outbox WHERE user_id = $1", user_id
        )
        == 0
    )


async def test_engine_recovery_loads_committed_credits_once(
    own_app: Litestar, outbox_path: Path
) -> None:
    async with serving(own_app) as client:
        engine = services_of(own_app).engine
        engine.ready = False
        token, body = await login(client, outbox_path)
        user_id = body["user"]["id"]
        # A restart: recovery reads balances that already include the pending credit.
        await engine.recover(services_of(own_app).pool)
        assert engine.exchange.cash(user_id) == 1_500
        assert await _outbox_empty(own_app, user_id)
        await services_of(own_app).mirror.reconcile_once(grace_s=0)
        assert engine.exchange.cash(user_id) == 1_500


async def test_redis_away_stops_login_but_not_sessions_or_wallet_reads(
    server_urls: tuple[str, str],
    database_url: str,
    redis_prefix: str,
    outbox_path: Path,
    client: httpx.AsyncClient,
) -> None:
    token, body = await login(client, outbox_path)
    # Same database and secret, but Redis at an address where nothing listens.
    settings = make_settings(database_url, "redis://127.0.0.1:1/0", redis_prefix, outbox_path)
    async with serving(create_app(settings)) as no_redis:
        otp = await no_redis.post("/api/v1/auth/otp", json={"phone": body["user"]["phone"]})
        assert otp.status_code == 503
        assert otp.json()["error"]["code"] == "unavailable"
        verify = await no_redis.post(
            "/api/v1/auth/verify", json={"phone": body["user"]["phone"], "otp": "123456"}
        )
        assert verify.status_code == 503
        assert (await no_redis.get("/api/v1/me", headers=bearer(token))).status_code == 200
        wallet = await no_redis.get("/api/v1/wallet", headers=bearer(token))
        assert wallet.status_code == 200
        assert wallet.json()["balance"] >= 1_500
        ready = await no_redis.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["redis"] is False
