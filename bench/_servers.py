"""Servers for benchmarks: PROBO_BENCH_DATABASE_URL / PROBO_BENCH_REDIS_URL, else embedded."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from probo.infra import embedded, migrate, with_database

BENCH_DATA_DIR = Path(".probo/bench-servers")


@contextmanager
def postgres_admin_url() -> Iterator[str]:
    url = os.environ.get("PROBO_BENCH_DATABASE_URL")
    if url:
        yield url
        return
    BENCH_DATA_DIR.mkdir(parents=True, exist_ok=True)
    server = embedded.start_postgres(BENCH_DATA_DIR)
    try:
        yield server.url
    finally:
        if not server.reused:
            server.stop()


@contextmanager
def redis_server_url() -> Iterator[str]:
    """PROBO_BENCH_REDIS_URL, else the embedded Redis under BENCH_DATA_DIR."""
    url = os.environ.get("PROBO_BENCH_REDIS_URL")
    if url:
        yield url
        return
    BENCH_DATA_DIR.mkdir(parents=True, exist_ok=True)
    server = embedded.start_redis(BENCH_DATA_DIR)
    try:
        yield server.url
    finally:
        if not server.reused:
            server.stop()


async def fresh_database(admin_url: str) -> tuple[str, str]:
    """(name, url) of a new database with the schema."""
    name = f"probo_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = with_database(admin_url, name)
    conn = await asyncpg.connect(url)
    await migrate(conn)
    await conn.close()
    return name, url


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()
