"""Postgres connections: the pool, schema migration, and the error translations
every store shares (an unreachable database is a 503, never a 500); and the SQL that
belongs to no package: the readiness ping, creating a database, migrating it.

A request waits, for at most POOL_ACQUIRE_TIMEOUT_S, for a free pooled connection. A
pool still full after that raises PoolExhausted: overload, told apart from an outage
(a 503 that says "busy" and counts in `probo_pool_exhausted_total`), though it is a
TimeoutError still, so code that treats "no connection" as "try later" keeps doing so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from loguru import logger

from probo.infra import metrics

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schema.sql"
# Any number that is ours alone: serialises concurrent migrations of one database.
MIGRATION_LOCK_ID = 0x50524F424F
CONNECT_TRIES_MAX = 30
CONNECT_TIMEOUT_S = 5.0

# A request waits at most this long for a pooled connection, then answers 503.
POOL_ACQUIRE_TIMEOUT_S = 5.0

# Errors that mean "the database is away", as opposed to "the query is wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
)
# Conflicts Postgres resolves by aborting one transaction; retrying is safe.
CONFLICT_ERRORS: tuple[type[BaseException], ...] = (asyncpg.exceptions.TransactionRollbackError,)


class PoolExhausted(TimeoutError):
    """Every pooled connection stayed in use for POOL_ACQUIRE_TIMEOUT_S."""


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection, waited for at most POOL_ACQUIRE_TIMEOUT_S; then PoolExhausted,
    or TimeoutError when the wait went on a connect to an unresponsive server."""
    try:
        conn = await pool.acquire(timeout=POOL_ACQUIRE_TIMEOUT_S)
    except TimeoutError:
        if pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size():
            metrics.POOL_EXHAUSTED.labels("postgres").inc()
            raise PoolExhausted(
                f"all {pool.get_max_size()} Postgres connections stayed in use for "
                f"{POOL_ACQUIRE_TIMEOUT_S} s"
            ) from None
        raise
    try:
        yield conn
    finally:
        await pool.release(conn)


def with_database(url: str, name: str) -> str:
    """`url` pointed at database `name` (keeps the host, user and query, e.g. a socket dir)."""
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


async def create_pool(url: str, *, size_max: int) -> asyncpg.Pool:
    """A pool, retried while the server is still starting."""
    delay_s = 0.1
    for attempt in range(1, CONNECT_TRIES_MAX + 1):
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min(2, size_max),
                max_size=size_max,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=30,
            )
            assert pool is not None
            return pool
        except (OSError, asyncpg.exceptions.CannotConnectNowError) as exc:
            if attempt == CONNECT_TRIES_MAX:
                raise
            logger.warning("postgres not reachable yet ({}), retrying", exc)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 2.0)
    raise AssertionError("unreachable")


async def ping(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """One round trip; raises one of UNAVAILABLE_ERRORS when Postgres does not answer."""
    await conn.fetchval("SELECT 1")


async def create_database_if_missing(conn: asyncpg.Connection, name: str) -> None:
    if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
        await conn.execute(f'CREATE DATABASE "{name}"')


async def ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` on the server at `admin_url` unless it exists."""
    conn = await asyncpg.connect(admin_url)
    try:
        await create_database_if_missing(conn, name)
    finally:
        await conn.close()


async def migrate(conn: asyncpg.Connection, schema_path: Path = SCHEMA_PATH) -> None:
    """Apply schema.sql; idempotent, and safe when several processes start at once."""
    sql = await asyncio.to_thread(schema_path.read_text)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
        await conn.execute(sql)


async def migrate_url(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        await migrate(conn)
    finally:
        await conn.close()
