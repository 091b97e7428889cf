"""Connection pools wait, bounded (SPEC §15): a request finding every connection busy
waits for one to come free; a pool still full after its wait is "busy", told apart
from an outage. Real Redis and Postgres; the pools are made small to fill them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.exceptions import MaxConnectionsError

from probo.infra import connect_redis, db
from probo.web import ApiError, redis_required

# Long enough that a waiter still waits when a busy machine is slow to schedule the test.
WAIT_LONG_S = 30.0
WAIT_SHORT_S = 0.1
# How long the test lets a waiter run to show it is waiting rather than refused.
SETTLE_S = 0.2


async def _holding_the_only_connection(
    url: str, pool_wait_s: float
) -> tuple[aioredis.Redis, aioredis.client.PubSub]:
    client = connect_redis(url, connections_max=1, pool_wait_s=pool_wait_s)
    pubsub = client.pubsub()
    await pubsub.subscribe(f"probo-test-pool-{uuid.uuid4().hex}")
    return client, pubsub


async def test_a_redis_command_waits_for_a_connection_to_come_free(
    server_urls: tuple[str, str],
) -> None:
    client, holder = await _holding_the_only_connection(server_urls[1], WAIT_LONG_S)
    try:
        waiter = asyncio.create_task(client.ping())
        done, _ = await asyncio.wait({waiter}, timeout=SETTLE_S)
        assert not done, "refused instead of waiting for the pool"
        await holder.aclose()  # gives the connection back
        assert await waiter is True
    finally:
        await holder.aclose()
        await client.aclose()


async def test_a_redis_pool_full_past_its_wait_is_busy_not_an_outage(
    server_urls: tuple[str, str],
) -> None:
    client, holder = await _holding_the_only_connection(server_urls[1], WAIT_SHORT_S)
    try:
        with pytest.raises(MaxConnectionsError):
            await client.ping()
        with pytest.raises(ApiError) as refused:
            with redis_required("login"):
                await client.ping()
    finally:
        await holder.aclose()
        await client.aclose()
    assert refused.value.status_code == 503
    assert refused.value.code == "unavailable"
    assert "busy" in refused.value.message
    assert refused.value.headers["Retry-After"] == "1"


async def test_an_unreachable_redis_is_an_outage() -> None:
    client = connect_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        with pytest.raises(ApiError) as refused:
            with redis_required("login"):
                await client.ping()
    finally:
        await client.aclose()
    assert refused.value.status_code == 503
    assert "temporarily unavailable" in refused.value.message


@pytest_asyncio.fixture
async def small_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, size_max=2)
    try:
        yield pool
    finally:
        await pool.close()


async def _hold_all(pool: asyncpg.Pool) -> list[asyncpg.Connection]:
    return [await pool.acquire() for _ in range(pool.get_max_size())]


async def _select_one(pool: asyncpg.Pool) -> int:
    async with db.connection(pool) as conn:
        return await conn.fetchval("SELECT 1")


async def test_a_postgres_request_waits_for_a_connection_to_come_free(
    small_pool: asyncpg.Pool,
) -> None:
    held = await _hold_all(small_pool)
    waiter = asyncio.create_task(_select_one(small_pool))
    done, _ = await asyncio.wait({waiter}, timeout=SETTLE_S)
    assert not done, "refused instead of waiting for the pool"
    for conn in held:
        await small_pool.release(conn)
    assert await waiter == 1


async def test_a_postgres_pool_full_past_its_wait_raises_pool_exhausted(
    small_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "POOL_ACQUIRE_TIMEOUT_S", WAIT_SHORT_S)
    held = await _hold_all(small_pool)
    try:
        with pytest.raises(db.PoolExhausted):
            await _select_one(small_pool)
    finally:
        for conn in held:
            await small_pool.release(conn)
    # Code that treats "no connection in time" as "try later" still catches it.
    assert issubclass(db.PoolExhausted, db.UNAVAILABLE_ERRORS)
    assert await _select_one(small_pool) == 1
