"""Market search over HTTP: `GET /api/v1/markets?q=...` among 10,000 markets.

    make bench-markets                        # = python -m bench.markets_search, the defaults
    python -m bench.markets_search --rate 300 --duration 20

Set-up (not timed): a fresh database (bench/_servers.py; PROBO_BENCH_DATABASE_URL and
PROBO_BENCH_REDIS_URL name the servers, embedded ones start otherwise) holding
`MARKETS` markets written straight into Postgres (titles and descriptions drawn from
a vocabulary of places, teams, topics and filler words; a fifth of them closed), each
with its escrow account and `TRADES_PER_MARKET` trades (on average) spread over the
last 48 hours, so about half of each market's trades fall in the 24 h window. Then
`probo serve` starts in a child process and refreshes every market's 24 h figures
once (its start-up sweep); the bench waits for that to finish.

Measured: an open loop (bench/loadgen.py, in its own process) at `--rate` requests a
second over `--connections` keep-alive connections, each request a search from
`QUERIES` (one word, a prefix, two words, a word with a category, a sort by volume or
by closing), round-robin; latency from each request's scheduled send time (no
coordinated omission), p50/p99/p99.9, and the CPU of the server and of Postgres. The
rate is well under what the server can answer, so the figures are the search's own
cost rather than queueing. Target (reported, not enforced): p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import asyncpg

from bench._servers import drop_database, fresh_database, postgres_admin_url, redis_server_url
from bench.load import CheckFailed, Phase, percentile, probo_server, run_phase

MARKETS = 10_000
TRADES_PER_MARKET = 20
SEED = 20261208
P99_TARGET_S = 0.020
STATS_WAIT_S = 120.0

PLACES = ["India", "Mumbai", "Delhi", "Bengaluru", "Chennai", "Kolkata", "Pune", "Hyderabad",
          "Australia", "England", "Pakistan", "Gujarat", "Kerala", "Punjab", "Goa", "Assam"]  # fmt: skip
TOPICS = ["cricket", "election", "rain", "monsoon", "Sensex", "Nifty", "bitcoin", "inflation",
          "IPL", "football", "hockey", "budget", "temperature", "film", "box office", "chess"]  # fmt: skip
CATEGORIES = ["cricket", "politics", "weather", "markets", "crypto", "economy", "sports",
              "entertainment"]  # fmt: skip
FILLER = [f"w{n:04d}" for n in range(3000)]  # rare words: each in a few descriptions

QUERIES = [
    {"q": "india"},
    {"q": "ind"},  # a prefix
    {"q": "mumbai rain"},
    {"q": "election", "status": "open"},
    {"q": "cricket", "category": "cricket"},
    {"q": "bitcoin", "sort": "volume"},
    {"q": "monsoon", "sort": "closing", "status": "open"},
    {"q": "w0042"},  # a rare word
    {"q": "nifty sensex"},  # two words no market has together: nothing
    {"q": "Hyderabad", "limit": "20"},
]


def _market(rng: random.Random) -> tuple[str, str, str]:
    place, topic = rng.choice(PLACES), rng.choice(TOPICS)
    title = f"Will {place} see {topic} news above {rng.randint(1, 99)} by {rng.randint(1, 28)} Dec?"
    description = (
        f"Resolves YES if the {topic} outcome in {place} is confirmed by an official "
        f"source. {' '.join(rng.choices(FILLER, k=8))}."
    )
    return title, description, rng.choice(CATEGORIES)


async def populate(url: str) -> None:
    """MARKETS markets with their escrow accounts and about TRADES_PER_MARKET trades each."""
    rng = random.Random(SEED)
    now = datetime.now(UTC)
    markets, trades = [], []
    trade_id = 0
    for market_id in range(1, MARKETS + 1):
        title, description, category = _market(rng)
        created_at = now - timedelta(days=3, seconds=MARKETS - market_id)
        closes_at = now + timedelta(hours=rng.randint(1, 24 * 60))
        status = "closed" if rng.random() < 0.2 else "open"
        volume, last_price = 0, None
        times = sorted(
            now - timedelta(seconds=rng.uniform(0, 48 * 3600))
            for _ in range(rng.randint(0, 2 * TRADES_PER_MARKET))
        )
        for at in times:  # ids in time order, as the engine assigns them
            trade_id += 1
            quantity, last_price = rng.randint(1, 50), rng.randrange(50, 1000, 50)
            trades.append((trade_id, market_id, "mint", last_price, quantity, 0, 0, "yes", "buy",
                           0, 0, "no", "buy", at))  # fmt: skip
            volume += quantity
        markets.append((market_id, title, description, category, status, closes_at, created_at,
                        volume, last_price))  # fmt: skip
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "markets",
            records=markets,
            columns=["id", "title", "description", "category", "status", "closes_at",
                     "created_at", "volume", "last_price"],
        )  # fmt: skip
        await conn.execute("SELECT setval(pg_get_serial_sequence('markets', 'id'), $1)", MARKETS)
        await conn.execute(
            "INSERT INTO accounts (kind, market_id) SELECT 'market_escrow', id FROM markets"
        )
        await conn.execute(
            "INSERT INTO market_stats (market_id) SELECT id FROM markets ON CONFLICT DO NOTHING"
        )
        await conn.copy_records_to_table(
            "trades",
            records=trades,
            columns=["id", "market_id", "kind", "yes_price", "quantity", "taker_order_id",
                     "taker_user_id", "taker_outcome", "taker_side", "maker_order_id",
                     "maker_user_id", "maker_outcome", "maker_side", "created_at"],
        )  # fmt: skip
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    print(f"set-up: {MARKETS} markets, {len(trades)} trades")


async def wait_for_figures(url: str, since: datetime) -> float:
    """Seconds until the server's start-up sweep has refreshed every market's figures."""
    started = time.monotonic()
    conn = await asyncpg.connect(url)
    try:
        while time.monotonic() - started < STATS_WAIT_S:
            stale = await conn.fetchval(
                "SELECT count(*) FROM market_stats WHERE refreshed_at < $1", since
            )
            if stale == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    raise CheckFailed("the 24 h figures were not refreshed")


def requests(port: int) -> list[bytes]:
    return [
        f"GET /api/v1/markets?{urlencode(query)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        for query in QUERIES
    ]


def report(phase: Phase, args: argparse.Namespace, sweep_s: float) -> bool:
    latencies = phase.latencies
    p99 = percentile(latencies, 0.99)
    answered = sum(phase.window_statuses.values())
    print(f"\nmarket search: {MARKETS} markets, {len(QUERIES)} queries round-robin")
    print(f"machine: {platform.machine()}, {_cores()} cores, Python {platform.python_version()}")
    print(f"start-up sweep of the 24 h figures: {sweep_s:.1f} s")
    print(
        f"open loop {args.rate:.0f} req/s over {args.connections} connections, "
        f"{args.duration:.0f} s: {answered} answers {dict(phase.window_statuses)}"
    )
    print(
        f"latency ms: p50 {percentile(latencies, 0.5) * 1000:.2f}  p99 {p99 * 1000:.2f}  "
        f"p99.9 {percentile(latencies, 0.999) * 1000:.2f}  max {latencies[-1] * 1000:.2f}"
    )
    postgres = f"{phase.postgres_cpu * 100:.0f}%" if phase.postgres_cpu is not None else "n/a"
    print(f"CPU: server {phase.server_cpu * 100:.0f}%, Postgres {postgres} (100% = one core)")
    ok = set(phase.window_statuses) == {200} and p99 < P99_TARGET_S
    print(f"target p99 < {P99_TARGET_S * 1000:.0f} ms: {'met' if ok else 'NOT met'}")
    return ok


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests a second")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    with postgres_admin_url() as admin_url, redis_server_url() as redis_url:
        name, url = asyncio.run(fresh_database(admin_url))
        try:
            asyncio.run(populate(url))
            with tempfile.TemporaryDirectory(prefix="probo-bench-markets-") as tmp:
                workdir = Path(tmp)
                probo = probo_server("bench-markets", 0, name, url, redis_url, workdir)
                server = probo.server
                try:
                    started = datetime.now(UTC)
                    asyncio.run(server.wait_ready("/readyz"))
                    sweep_s = asyncio.run(wait_for_figures(url, started))
                    phase = run_phase(
                        server, "search", requests(server.port), mode="open",
                        connections=args.connections, rate=args.rate, warmup_s=args.warmup,
                        duration_s=args.duration, generators=1, workdir=workdir,
                    )  # fmt: skip
                finally:
                    server.stop()
                return 0 if report(phase, args, sweep_s) else 1
        finally:
            asyncio.run(drop_database(admin_url, name))


if __name__ == "__main__":
    sys.exit(main())
