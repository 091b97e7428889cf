"""Postgres or Redis going away: 503s with a code, never a 500, and recovery after;
revocations and sessions that outlive restarts; concurrent referrals that cannot
deadlock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest_asyncio
from litestar import Litestar

from probo.app import create_app
from probo.auth import TokenIssuer
from probo.infra import Settings
from probo.services import services_of
from tests.conftest import assert_error, bearer, login, make_settings, serving
from tests.fakes import TcpProxy


def _postgres_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = int(query.get("port", [parts.port or 5432])[0])
    return host, port


@pytest_asyncio.fixture
async def proxy(side_database_url: str) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(*_postgres_address(side_database_url))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.cut()


def _through(database_url: str, proxy: TcpProxy) -> str:
    name = urlsplit(database_url).path.rsplit("/", 1)[1]
    return f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}"


async def test_postgres_outage_answers_503_and_recovers(
    proxy: TcpProxy,
    side_database_url: str,
    server_urls: tuple[str, str],
    redis_prefix: str,
    outbox_path: Path,
) -> None:
    settings = make_settings(
        _through(side_database_url, proxy), server_urls[1], redis_prefix, outbox_path
    )
    async with serving(create_app(settings)) as client:
        token, _ = await login(client, outbox_path)
        assert (await client.get("/api/v1/wallet", headers=bearer(token))).status_code == 200
        await proxy.cut()
        for method, path, body in (
            ("GET", "/api/v1/wallet", None),
            ("GET", "/api/v1/me", None),
            ("GET", "/api/v1/kyc", None),
            ("POST", "/api/v1/wallet/deposits", {"amount": 1000, "idempotency_key": "outage"}),
        ):
            response = await client.request(method, path, json=body, headers=bearer(token))
            assert_error(response, 503, "unavailable")
            assert "retry-after" in response.headers
        assert (await client.get("/readyz")).status_code == 503
        await proxy.restore()
        for _ in range(50):  # the pool replaces its dead connections as they are used
            if (await client.get("/api/v1/wallet", headers=bearer(token))).status_code == 200:
                break
            await asyncio.sleep(0.1)
        wallet = await client.get("/api/v1/wallet", headers=bearer(token))
        assert wallet.status_code == 200
        assert wallet.json()["balance"] == 1500  # the refused deposit moved nothing
        assert (await client.get("/readyz")).status_code == 200


async def test_logout_survives_a_restart_with_redis_away(
    client: httpx.AsyncClient, database_url: str, redis_prefix: str, outbox_path: Path
) -> None:
    token, _ = await login(client, outbox_path)
    assert (await client.post("/api/v1/auth/logout", headers=bearer(token))).status_code == 200
    # A new process on the same database, with Redis unreachable from the start.
    settings = make_settings(database_url, "redis://127.0.0.1:1/0", redis_prefix, outbox_path)
    async with serving(create_app(settings)) as restarted:
        assert_error(
            await restarted.get("/api/v1/wallet", headers=bearer(token)), 401, "unauthorized"
        )


async def test_logout_works_while_redis_is_away(
    client: httpx.AsyncClient,
    app: Litestar,
    database_url: str,
    redis_prefix: str,
    outbox_path: Path,
) -> None:
    token, _ = await login(client, outbox_path)
    settings = make_settings(database_url, "redis://127.0.0.1:1/0", redis_prefix, outbox_path)
    async with serving(create_app(settings)) as no_redis:
        assert (
            await no_redis.post("/api/v1/auth/logout", headers=bearer(token))
        ).status_code == 200
        assert_error(await no_redis.get("/api/v1/me", headers=bearer(token)), 401, "unauthorized")
    # A process that missed the news (nothing was published) learns it at its next
    # periodic reload from Postgres.
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200
    await services_of(app).auth.revocations.load()
    assert_error(await client.get("/api/v1/me", headers=bearer(token)), 401, "unauthorized")


async def test_a_valid_token_for_a_user_that_does_not_exist_is_401(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    token, _ = TokenIssuer(settings.jwt_secret, 3600).issue(2**62, "user")
    response = await client.post(
        "/api/v1/wallet/deposits",
        json={"amount": 1000, "idempotency_key": "ghost"},
        headers=bearer(token),
    )
    assert_error(response, 401, "unauthorized")
    kyc = {
        "pan": "GHOST1234Z",
        "name": "Nobody",
        "bank_account": "123456789",
        "ifsc": "HDFC0001234",
    }
    assert_error(
        await client.post("/api/v1/kyc", json=kyc, headers=bearer(token)), 401, "unauthorized"
    )


async def test_chained_and_mutual_referrals_at_once_never_fail_or_pay_twice(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    for _ in range(10):
        users = [await login(client, outbox_path) for _ in range(3)]
        (a, a_body), (b, b_body), (c, c_body) = users
        code = {
            name: body["user"]["referral_code"]
            for name, (_, body) in zip("abc", users, strict=True)
        }
        chain = await asyncio.gather(
            client.post("/api/v1/referrals", json={"code": code["b"]}, headers=bearer(a)),
            client.post("/api/v1/referrals", json={"code": code["c"]}, headers=bearer(b)),
        )
        assert [r.status_code for r in chain] == [200, 200]
        d, _ = await login(client, outbox_path)
        e, e_body = await login(client, outbox_path)
        d_code = (await client.get("/api/v1/me", headers=bearer(d))).json()["referral_code"]
        mutual = await asyncio.gather(
            client.post(
                "/api/v1/referrals",
                json={"code": e_body["user"]["referral_code"]},
                headers=bearer(d),
            ),
            client.post("/api/v1/referrals", json={"code": d_code}, headers=bearer(e)),
        )
        assert sorted(r.status_code for r in mutual) == [200, 422]
        balances = [
            (await client.get("/api/v1/wallet", headers=bearer(t))).json()["balance"]
            for t in (d, e)
        ]
        assert sorted(balances) == [1500, 2500]
