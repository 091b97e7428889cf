"""Recovery of 200,000 open orders and 50,000 users: seconds to ready, target <= 10 s.

A fresh database is filled by SQL alone: first `--history` orders (default 1,000,000)
placed a month ago and canceled since, half of them with a client order id (they move
no money: they are what a long history leaves behind); then 50,000 users, each with a user_cash account
funded from the platform bank (a deposit transfer covering the user's locks plus a
margin, so the ledger balances); 10 markets with empty escrow accounts; 200,000 open
gtc limit buys that cannot cross, spread at random (fixed seed) over users, markets and
both outcomes at own prices 50..450 (a NO buy at q is a YES ask at 1000 - q >= 550,
above every YES bid), quantities 1..100, half of them with a client order id.

Measured:
  (a) in process, `Engine().recover(pool)` (`RUNS` times, each a new engine, the
      collector reset between runs as in a new process); afterwards, untimed,
      `exchange.validate()` and the counts of users and open orders;
  (b) end to end, `python -m probo serve` on that database, from spawn until
      GET /readyz answers 200, and the process's RSS then. For comparison, the same
      on an empty database: what start-up costs without anything to recover.

    python -m bench.recovery                 # 1,000,000 historical orders
    python -m bench.recovery --history 0     # open orders only
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time

import asyncpg
import httpx
import psutil
import uvloop

from bench._servers import drop_database, fresh_database, postgres_admin_url
from bench.writer import insert_funded_users, insert_markets
from probo.infra import configure_logging, create_pool
from probo.orderbook import Engine

TARGET_READY_S = 10.0
USERS = 50_000
MARKETS = 10
OPEN_ORDERS = 200_000
HISTORICAL_ORDERS = 1_000_000
TICK = 50
PRICE_LEVELS = 9  # own prices TICK .. 9 x TICK = 450 for both outcomes: nothing crosses
QUANTITY_MAX = 100
CLIENT_ORDER_ID_SHARE = 0.5
FUNDING_MARGIN = 100_000  # paise each user holds beyond what their orders lock
SEED = 0.42  # setseed() for the order placement
RUNS = 3
READY_TIMEOUT_S = 120.0
READY_POLL_S = 0.02
NOT_READY_STATUS = 503  # what /readyz answers until the engine has recovered
STOP_TIMEOUT_S = 30.0
POOL_SIZE = 2
DEFAULT_GC_THRESHOLD = gc.get_threshold()
MIB = 1024 * 1024


# --- the database ------------------------------------------------------------------------


async def populate(conn: asyncpg.Connection, history: int) -> None:
    await conn.execute("SELECT setseed($1)", SEED)
    await insert_markets(conn, MARKETS, TICK)
    await insert_history(conn, history)
    # The orders are drawn first: they decide what each user's deposit must cover.
    await conn.execute(
        "CREATE TEMP TABLE bench_orders AS "
        "SELECT $8 + i AS id, 1 + floor(random() * $2)::bigint AS user_id, "
        "       1 + floor(random() * $3)::bigint AS market_id, "
        "       CASE WHEN random() < 0.5 THEN 'yes' ELSE 'no' END AS outcome, "
        "       $4 * (1 + floor(random() * $5))::int AS price, "
        "       1 + floor(random() * $6)::int AS quantity, "
        "       CASE WHEN random() < $7 THEN 'bench-' || i END AS client_order_id "
        "FROM generate_series(1, $1) i",
        OPEN_ORDERS,
        USERS,
        MARKETS,
        TICK,
        PRICE_LEVELS,
        QUANTITY_MAX,
        CLIENT_ORDER_ID_SHARE,
        history,
    )
    await conn.execute(
        "CREATE TEMP TABLE bench_locks (user_id bigint PRIMARY KEY, locked bigint NOT NULL)"
    )
    await conn.execute(
        "INSERT INTO bench_locks SELECT user_id, sum(price * quantity) FROM bench_orders GROUP BY 1"
    )
    await insert_funded_users(
        conn,
        USERS,
        f"{FUNDING_MARGIN} + coalesce((SELECT locked FROM bench_locks l WHERE l.user_id = g.user_id), 0)",
    )
    await conn.execute(
        "INSERT INTO orders (id, user_id, market_id, outcome, side, type, time_in_force, price, "
        "    quantity, filled_quantity, cost, status, client_order_id, created_at, updated_at) "
        "SELECT id, user_id, market_id, outcome, 'buy', 'limit', 'gtc', price, quantity, 0, 0, "
        "       'open', client_order_id, now(), now() "
        "FROM bench_orders ORDER BY id"
    )
    await conn.execute("DROP TABLE bench_orders, bench_locks")
    await conn.execute("VACUUM ANALYZE")


async def insert_history(conn: asyncpg.Connection, history: int) -> None:
    """`history` orders, ids 1..history, placed a month ago and canceled unfilled: the
    users they name are inserted after them, so no key is checked here."""
    await conn.execute(
        "INSERT INTO orders (id, user_id, market_id, outcome, side, type, time_in_force, price, "
        "    quantity, filled_quantity, cost, status, cancel_reason, client_order_id, created_at, "
        "    updated_at) "
        "SELECT i, 1 + floor(random() * $2)::bigint, 1 + floor(random() * $3)::bigint, "
        "       CASE WHEN random() < 0.5 THEN 'yes' ELSE 'no' END, 'buy', 'limit', 'gtc', "
        "       $4 * (1 + floor(random() * $5))::int, 1 + floor(random() * $6)::int, 0, 0, "
        "       'canceled', 'user', CASE WHEN random() < $7 THEN 'history-' || i END, "
        "       now() - interval '30 days', now() - interval '30 days' "
        "FROM generate_series(1, $1) i",
        history,
        USERS,
        MARKETS,
        TICK,
        PRICE_LEVELS,
        QUANTITY_MAX,
        CLIENT_ORDER_ID_SHARE,
    )


async def fill(url: str, history: int) -> tuple[float, str]:
    """Seconds to populate the database at `url`, and the server's version."""
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await populate(conn, history)
        return time.perf_counter() - started, await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()


# --- (a) in process --------------------------------------------------------------------------


async def recover_in_process(url: str) -> list[float]:
    """Seconds of each `Engine().recover`, the engine checked after each (untimed)."""
    seconds = []
    pool = await create_pool(url, size_max=POOL_SIZE)
    try:
        for _ in range(RUNS):
            gc.unfreeze()
            gc.set_threshold(*DEFAULT_GC_THRESHOLD)
            gc.collect()
            engine = Engine()
            started = time.perf_counter()
            recovered = await engine.recover(pool)
            seconds.append(time.perf_counter() - started)
            engine.exchange.validate()
            if (recovered.users, recovered.open_orders) != (USERS, OPEN_ORDERS):
                raise AssertionError(
                    f"recovered {recovered.users} users and {recovered.open_orders} open orders"
                )
            del engine, recovered
    finally:
        await pool.close()
    return seconds


# --- (b) end to end ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_to_ready(database_url: str, redis_url: str | None) -> tuple[float, int]:
    """Seconds from spawning `probo serve` until /readyz = 200, and its RSS then (bytes).
    Without `redis_url` the server starts its embedded Redis (in a temporary data dir)."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="probo-bench-recovery-") as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROBO_")}
        env.update(
            PROBO_DATABASE_URL=database_url,
            PROBO_DATA_DIR=data_dir,
            PROBO_PORT=str(port),
            PROBO_COOKIE_SECURE="false",
            PROBO_LOG_LEVEL="WARNING",
            PROBO_DEMO="false",
            PROBO_REDIS_KEY_PREFIX=f"probo-bench-{port}:",
        )
        if redis_url:
            env["PROBO_REDIS_URL"] = redis_url
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "probo", "serve"], env=env)
        try:
            deadline = started + READY_TIMEOUT_S
            while time.perf_counter() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"probo serve exited with {process.returncode}")
                try:
                    response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                    if response.status_code not in (200, NOT_READY_STATUS):
                        raise RuntimeError(f"/readyz answered {response.status_code}")
                    if response.status_code == 200:
                        return time.perf_counter() - started, psutil.Process(
                            process.pid
                        ).memory_info().rss
                except httpx.TransportError:
                    pass
                time.sleep(READY_POLL_S)
            raise RuntimeError(f"probo serve was not ready in {READY_TIMEOUT_S} s")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(STOP_TIMEOUT_S)


# --- the report ----------------------------------------------------------------------------


def _span(values: list[float]) -> str:
    return f"min {min(values):5.2f} s, max {max(values):5.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description="start-up recovery of open orders")
    parser.add_argument(
        "--history", type=int, default=HISTORICAL_ORDERS, help="canceled orders before them"
    )
    history = parser.parse_args().history
    configure_logging("WARNING")
    redis_url = os.environ.get("PROBO_BENCH_REDIS_URL")
    with postgres_admin_url() as admin_url:
        name, url = uvloop.run(fresh_database(admin_url))
        empty_name, empty_url = uvloop.run(fresh_database(admin_url))
        try:
            fill_seconds, server = uvloop.run(fill(url, history))
            in_process = uvloop.run(recover_in_process(url))
            loaded = [serve_to_ready(url, redis_url) for _ in range(RUNS)]
            empty = [serve_to_ready(empty_url, redis_url) for _ in range(RUNS)]
        finally:
            uvloop.run(drop_database(admin_url, name))
            uvloop.run(drop_database(admin_url, empty_name))

    ready = [s for s, _ in loaded]
    print(
        f"recovery: {USERS:,} users, {MARKETS} markets, {OPEN_ORDERS:,} open orders "
        f"after {history:,} historical ones; "
        f"python {platform.python_version()}, postgres {server}, {RUNS} runs each "
        f"(database filled in {fill_seconds:.1f} s, not timed)"
    )
    print(f"  (a) Engine().recover in process:     {_span(in_process)}  (validate() passed)")
    print(
        f"  (b) probo serve, spawn to /readyz:  {_span(ready)}  "
        f"RSS at ready {max(rss for _, rss in loaded) / MIB:,.0f} MiB"
    )
    print(
        f"      the same on an empty database:  {_span([s for s, _ in empty])}  "
        f"RSS at ready {max(rss for _, rss in empty) / MIB:,.0f} MiB"
    )
    verdict = "met" if max(ready) <= TARGET_READY_S else "MISSED"
    print(f"  target <= {TARGET_READY_S:.0f} s to ready: {verdict}")


if __name__ == "__main__":
    main()
