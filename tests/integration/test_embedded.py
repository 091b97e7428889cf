"""The embedded Postgres and Redis (probo/infra/embedded.py): real servers in server_dir.

Each test registers every handle it gets with the `servers` fixture, which stops
them all at teardown, so a failing assertion never leaves a server running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from probo.infra import (
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServerError,
    start_postgres,
    start_redis,
)

CONNECT_TIMEOUT_S = 5.0
# Longer than any unix socket path may be (sun_path is 108 bytes on Linux).
DEEP_DIR_PARTS = ("d" * 60, "e" * 60)

Server = EmbeddedPostgres | EmbeddedRedis


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in reversed(started):
        server.stop()


def _pg(servers: list[Server], data_dir: Path) -> EmbeddedPostgres:
    pg = start_postgres(data_dir)
    servers.append(pg)
    return pg


def _redis(servers: list[Server], data_dir: Path) -> EmbeddedRedis:
    r = start_redis(data_dir)
    servers.append(r)
    return r


async def _pg_write(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text NOT NULL)")
        await conn.execute("INSERT INTO kept VALUES (1, 'survives restarts')")
    finally:
        await conn.close()


async def _pg_read(url: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        rows = await conn.fetch("SELECT id, note FROM kept ORDER BY id")
    finally:
        await conn.close()
    return [(row["id"], row["note"]) for row in rows]


async def _pg_select_one(url: str) -> int:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
    )


def _assert_postgres_gone(url: str) -> None:
    with pytest.raises((OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
        asyncio.run(_pg_select_one(url))


def _assert_redis_gone(url: str) -> None:
    client = _redis_client(url)
    try:
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        client.close()


@pytest.mark.slow
def test_data_survives_stop_and_start(server_dir: Path, servers: list[Server]) -> None:
    data_dir = server_dir / "probo-data"  # does not exist yet: start_* create it
    pg = _pg(servers, data_dir)
    r = _redis(servers, data_dir)
    asyncio.run(_pg_write(pg.url))
    client = _redis_client(r.url)
    client.set("revoked:jti-1", "1")
    client.close()

    pg.stop()
    r.stop()
    _assert_postgres_gone(pg.url)
    _assert_redis_gone(r.url)

    pg_again = _pg(servers, data_dir)
    r_again = _redis(servers, data_dir)
    assert asyncio.run(_pg_read(pg_again.url)) == [(1, "survives restarts")]
    client = _redis_client(r_again.url)
    try:
        assert client.get("revoked:jti-1") == b"1"
    finally:
        client.close()
    pg_again.stop()
    r_again.stop()
    _assert_postgres_gone(pg_again.url)
    _assert_redis_gone(r_again.url)


@pytest.mark.slow
def test_second_start_while_running_reuses_and_stop_is_idempotent(
    server_dir: Path, servers: list[Server]
) -> None:
    first_pg = _pg(servers, server_dir)
    second_pg = _pg(servers, server_dir)
    assert asyncio.run(_pg_select_one(second_pg.url)) == 1
    assert second_pg.url == first_pg.url

    first_r = _redis(servers, server_dir)
    second_r = _redis(servers, server_dir)
    assert second_r.url == first_r.url
    client = _redis_client(second_r.url)
    try:
        assert client.ping()
    finally:
        client.close()

    for handle in (first_pg, second_pg, first_pg, first_r, second_r, first_r):
        handle.stop()  # one server each: the later calls have nothing left to do
    _assert_postgres_gone(first_pg.url)
    _assert_redis_gone(first_r.url)


@pytest.mark.slow
def test_stale_handle_does_not_stop_a_newer_server(server_dir: Path, servers: list[Server]) -> None:
    old = _pg(servers, server_dir)
    old.stop()
    new = _pg(servers, server_dir)
    old.stop()  # already stopped: must leave `new` alone
    assert asyncio.run(_pg_select_one(new.url)) == 1


@pytest.mark.slow
def test_deep_data_dir_still_works(server_dir: Path, servers: list[Server]) -> None:
    # Too deep for sockets in data_dir: Postgres puts its socket in the runtime dir,
    # Redis listens on 127.0.0.1 instead.
    data_dir = server_dir.joinpath(*DEEP_DIR_PARTS)
    pg = _pg(servers, data_dir)
    r = _redis(servers, data_dir)
    assert asyncio.run(_pg_select_one(pg.url)) == 1
    assert r.url.startswith("redis://127.0.0.1:")
    client = _redis_client(r.url)
    try:
        assert client.ping()
    finally:
        client.close()
    # A restart finds the TCP-mode server again through its recorded endpoint.
    assert _redis(servers, data_dir).url == r.url


@pytest.mark.slow
def test_postgres_start_failure_reports_the_log(server_dir: Path) -> None:
    # A pgdata made by an unknown major version: initdb is skipped, the server refuses.
    pgdata = server_dir / "postgres"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("9\n")
    with pytest.raises(EmbeddedServerError) as info:
        start_postgres(server_dir)
    assert "tail of" in str(info.value)


@pytest.mark.slow
def test_redis_start_failure_reports_the_log(server_dir: Path) -> None:
    # An AOF redis cannot parse: redis-server exits at once.
    (server_dir / "redis").mkdir()
    (server_dir / "redis" / "appendonly.aof").write_text("this is not an append only file\n")
    with pytest.raises(EmbeddedServerError) as info:
        start_redis(server_dir)
    assert "exited" in str(info.value)
    assert "tail of" in str(info.value)
