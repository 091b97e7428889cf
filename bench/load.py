"""Order entry over HTTP under load: `probo serve` against the framework floor.

    make bench-load                               # = python -m bench.load, the defaults
    python -m bench.load --duration 10 --generators 2

Set-up (not timed): a fresh database (bench/_servers.py; PROBO_BENCH_DATABASE_URL and
PROBO_BENCH_REDIS_URL name the servers, embedded ones start otherwise), a Redis key
prefix of its own, and `probo serve` in a child process with rate limits out of the way. 1,000 users
log in through the API (one OTP each, read from the SMS outbox) and deposit
`DEPOSIT` paise; the admin creates 10 markets.

The order flow: a pool of `POOL_REQUESTS` pre-encoded `POST /api/v1/orders`, each
from a random user on a random market, sent round-robin. About 70% rest: buy YES or
buy NO, limit, at `RESTING_PRICES`; a YES bid and a NO bid never cross as their prices
add up to at most 900 paise. The other `CROSSING_FRACTION` buy YES or NO at
`CROSSING_PRICE` (1000 - the lowest resting price) with time in force ioc, so each
meets the best resting bids on the other side (mints) and never rests. Resting bids
are added faster than crossing orders take them, so after the warm-up the crossing
orders fill. The deposit covers every order of a run many times over and a user's
open orders per market stay far below the engine's cap of 1,000 (reported after the
run).

Measured, with the load generator (bench/loadgen.py) in separate processes:

- saturation: closed loop, `--connections` keep-alive connections each with one
  request in flight; the rate of 201 answers (durable, acknowledged orders) over the
  window after a warm-up;
- latency at half of saturation: open loop at 0.5 x that rate, latency counted from
  each request's scheduled send time (no coordinated omission), p50/p99/p99.9.

Then the same for the floor (bench/floor_app.py: a bare litestar app on the same
uvicorn settings, decoding the same body into the same struct). Every phase reports
CPU use over its window of the generator, the server and Postgres (100% = one core);
probo's phases also the ledger writer's batches (from its /metrics): how many, how
large, how long each took to commit.

Checked after the probo phases: `/readyz` is 200, the `orders` table holds at least
as many orders as there were 201 answers, and `probo audit` passes; the process exits
1 otherwise. Targets (reported, not enforced): probo's saturation >= 0.5 x the floor's,
p99 <= 10 ms at half of saturation.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import asyncpg
import httpx
import msgspec
import psutil
import redis

from bench._servers import drop_database, fresh_database, postgres_admin_url, redis_server_url
from bench.loadgen import Plan, Result

USERS = 1000
MARKETS = 10
DEPOSIT = 10_000_000  # paise per user: the largest single deposit
POOL_REQUESTS = 50_000
SEED = 20240601
CROSSING_FRACTION = 0.3
RESTING_PRICES = (300, 350, 400, 450)  # own-outcome paise; tick 50
CROSSING_PRICE = 1000 - min(RESTING_PRICES)  # meets every resting bid of the other side
QUANTITY_MAX = 5
OUTCOMES = ("yes", "no")
MARKET_OPEN_DAYS = 30

TARGET_FLOOR_RATIO = 0.5
TARGET_P99_MS = 10.0
HALF = 0.5  # the open-loop rate as a fraction of the closed-loop saturation
DEFAULT_CONNECTIONS = 256
DEFAULT_WARMUP_S = 5.0
DEFAULT_DURATION_S = 20.0
OPEN_WARMUP_S = 2.0
GENERATOR_START_DELAY_S = 3.0  # for the generators to load the pool and connect
SAMPLE_LEAD_S = 1.0  # the first server-side sample, this long before the window
SETUP_CONCURRENCY = 32
# Set-up clients drop an idle connection well before the server's keep-alive timeout
# (uvicorn: 5 s), or a request can go out on one the server is closing (ReadError).
SETUP_LIMITS = httpx.Limits(max_connections=SETUP_CONCURRENCY, keepalive_expiry=1.0)
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 3000
OPEN_ORDERS_PER_USER_MAX = 1000  # the engine's cap per user and market
PERCENTILES = (0.50, 0.99, 0.999)
# A client backend's process title: "postgres: <cluster>: <user> <database> <host>(<port>) ..."
CLIENT_BACKEND = re.compile(r" \S+\(\d+\) |\[local\]")
# The `Ledger` fields, in order, from probo's /metrics.
LEDGER_METRICS = (
    "probo_ledger_batch_seconds_count",
    "probo_ledger_batch_entries_sum",
    "probo_ledger_batch_seconds_sum",
)
ROOT = Path(__file__).resolve().parent.parent


class CheckFailed(AssertionError):
    pass


# --- servers ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(**probo: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBO_")}
    env.update(probo)
    return env


class Server:
    """An HTTP server in a child process, stopped with SIGTERM. `database`: the name of
    the database it uses, if any; such a server (probo) also exposes /metrics."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        port: int,
        log: Path,
        database: str | None = None,
    ):
        self.name = name
        self.database = database
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr
            )

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise CheckFailed(
                f"{self.name} exited with {self.process.returncode}: {self.log_tail()}"
            )

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    async def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(base_url=self.base, timeout=1) as http:
            while time.monotonic() < deadline:
                self.check_running()
                try:
                    if (await http.get(path)).status_code < 500:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise CheckFailed(f"{self.name} did not become ready: {self.log_tail()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


# --- set-up through the API ---------------------------------------------------------------


async def _limited(calls: Sequence[Callable[[], Awaitable[object]]]) -> list[object]:
    semaphore = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(call: Callable[[], Awaitable[object]]) -> object:
        async with semaphore:
            return await call()

    return await asyncio.gather(*(one(call) for call in calls))


def _expect(response: httpx.Response, status: int) -> dict:
    if response.status_code != status:
        raise CheckFailed(f"{response.request.url.path}: {response.status_code} {response.text}")
    return response.json()


def _sent_otps(outbox: Path) -> dict[str, str]:
    """The last OTP sent to each phone, from the outbox provider's JSON lines."""
    otps = {}
    for line in outbox.read_text().splitlines():
        message = msgspec.json.decode(line)
        otps[message["to"]] = message["otp"]
    return otps


async def _log_in(http: httpx.AsyncClient, phones: list[str], outbox: Path) -> list[str]:
    """Bearer tokens for `phones`, one OTP each."""

    def request_otp(phone: str) -> Callable[[], Awaitable[object]]:
        async def call() -> object:
            return _expect(await http.post("/api/v1/auth/otp", json={"phone": phone}), 202)

        return call

    await _limited([request_otp(phone) for phone in phones])
    otps = _sent_otps(outbox)

    def verify(phone: str) -> Callable[[], Awaitable[object]]:
        async def call() -> object:
            response = await http.post(
                "/api/v1/auth/verify", json={"phone": phone, "otp": otps[phone]}
            )
            return _expect(response, 200)["token"]

        return call

    tokens = await _limited([verify(phone) for phone in phones])
    http.cookies.clear()
    return tokens  # type: ignore[return-value]


async def _deposit(http: httpx.AsyncClient, tokens: list[str]) -> None:
    def deposit(token: str) -> Callable[[], Awaitable[object]]:
        async def call() -> object:
            response = await http.post(
                "/api/v1/wallet/deposits",
                json={"amount": DEPOSIT, "idempotency_key": uuid.uuid4().hex},
                headers={"Authorization": f"Bearer {token}"},
            )
            return _expect(response, 201)

        return call

    await _limited([deposit(token) for token in tokens])


async def _create_markets(http: httpx.AsyncClient, admin_token: str, count: int) -> list[int]:
    closes_at = (datetime.now(UTC) + timedelta(days=MARKET_OPEN_DAYS)).isoformat()
    ids = []
    for n in range(count):
        response = await http.post(
            "/api/v1/admin/markets",
            json={"title": f"Load market {n + 1}?", "category": "bench", "closes_at": closes_at},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        ids.append(_expect(response, 201)["id"])
    return ids


def _phones(count: int, rng: random.Random) -> list[str]:
    first = rng.randrange(10_000_000, 80_000_000)
    return [f"+9198{first + n:08d}" for n in range(count)]


# --- the order flow -----------------------------------------------------------------------


def order_pool(tokens: list[str], market_ids: list[int], size: int, seed: int) -> list[bytes]:
    """`size` pre-encoded order requests: see the module docstring for the mix."""
    rng = random.Random(seed)
    heads = [
        (
            "POST /api/v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        ).encode()
        for token in tokens
    ]
    pool = []
    for _ in range(size):
        order: dict[str, object] = {
            "market_id": rng.choice(market_ids),
            "outcome": rng.choice(OUTCOMES),
            "side": "buy",
            "type": "limit",
        }
        if rng.random() < CROSSING_FRACTION:
            order.update(price=CROSSING_PRICE, time_in_force="ioc")
        else:
            order["price"] = rng.choice(RESTING_PRICES)
        order["quantity"] = rng.randint(1, QUANTITY_MAX)
        body = msgspec.json.encode(order)
        pool.append(rng.choice(heads) + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return pool


# --- phases -------------------------------------------------------------------------------


@dataclass
class Ledger:
    """The ledger writer's batches over a window, from probo's /metrics."""

    batches: float
    entries: float
    seconds: float  # committing

    def __sub__(self, other: Ledger) -> Ledger:
        return Ledger(
            self.batches - other.batches, self.entries - other.entries, self.seconds - other.seconds
        )


@dataclass
class Sample:
    """What the server side has used so far, at one moment.

    Taking one costs the bench process some milliseconds of CPU (a scan of the
    machine's processes, a /metrics request), which on two cores stalls the server
    for a moment: the first is taken `SAMPLE_LEAD_S` before the measured window, in
    the warm-up, and rates are over the time between the two samples."""

    at: float  # time.monotonic()
    server_cpu_s: float
    postgres_cpu_s: dict[int, float]  # by process
    ledger: Ledger | None

    @staticmethod
    def take(server: Server, process: psutil.Process) -> Sample:
        server.check_running()
        cpu = process.cpu_times()
        if server.database is None:
            return Sample(time.monotonic(), cpu.user + cpu.system, {}, None)
        return Sample(
            time.monotonic(),
            cpu.user + cpu.system,
            _postgres_cpu_times(server.database),
            _ledger_counters(server),
        )

    def server_cpu_since(self, before: Sample) -> float:
        """The server's CPU use between the samples, as a fraction of one core."""
        return (self.server_cpu_s - before.server_cpu_s) / (self.at - before.at)

    def postgres_cpu_since(self, before: Sample) -> float:
        used = sum(
            t - before.postgres_cpu_s.get(pid, 0.0) for pid, t in self.postgres_cpu_s.items()
        )
        return used / (self.at - before.at)

    def ledger_since(self, before: Sample) -> Ledger | None:
        """The writer's counters between the samples, scaled to the measured window."""
        if self.ledger is None or before.ledger is None:
            return None
        return self.ledger - before.ledger


@dataclass
class Phase:
    server: str
    name: str
    mode: Literal["closed", "open"]
    connections: int
    offered: float  # requests/s; 0 for closed loop
    statuses: Counter[int]  # every answer, warm-up included
    window_statuses: Counter[int]
    window_s: float
    latencies: list[float]  # sorted
    send_lags: list[float]  # sorted
    generator_cpu: list[float]  # per generator process, fraction of a core
    server_cpu: float
    postgres_cpu: float | None  # None for a server without a database
    ledger: Ledger | None  # the ledger writer between the server-side samples, for probo
    sampled_s: float  # time between the server-side samples (CPU and ledger figures)
    connection_errors: int
    unanswered: int
    error_samples: list[str]

    @property
    def acked_per_s(self) -> float:
        return self.window_statuses[201] / self.window_s

    @property
    def other_answers(self) -> int:
        return sum(n for status, n in self.window_statuses.items() if status != 201)


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _postgres_cpu_times(database: str) -> dict[int, float]:
    """CPU seconds so far of Postgres's processes but other databases' client backends
    (other runs may share the server)."""
    times = {}
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != "postgres":
            continue
        try:
            title = " ".join(process.cmdline())
            if CLIENT_BACKEND.search(title) and f" {database} " not in title:
                continue
            cpu = process.cpu_times()
        except psutil.Error:
            continue
        times[process.pid] = cpu.user + cpu.system
    return times


def _ledger_counters(server: Server) -> Ledger:
    values = dict.fromkeys(LEDGER_METRICS, 0.0)
    for line in httpx.get(f"{server.base}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return Ledger(*(values[name] for name in LEDGER_METRICS))


def _result_path(workdir: Path, generator: int) -> Path:
    return workdir / f"result-{generator}.msgpack"


def run_phase(
    server: Server,
    name: str,
    pool: list[bytes],
    *,
    mode: Literal["closed", "open"],
    connections: int,
    rate: float,
    warmup_s: float,
    duration_s: float,
    generators: int,
    workdir: Path,
) -> Phase:
    """One load phase: `generators` loadgen processes sharing connections and rate."""
    start_at = time.time() + GENERATOR_START_DELAY_S
    processes = []
    for g in range(generators):
        plan = Plan(
            host="127.0.0.1",
            port=server.port,
            mode=mode,
            connections=connections // generators + (g < connections % generators),
            start_at=start_at,
            warmup_s=warmup_s,
            duration_s=duration_s,
            rate=rate / generators,
            requests=pool,
            first_request=g * len(pool) // generators,
        )
        plan_path = workdir / f"plan-{g}.msgpack"
        plan_path.write_bytes(msgspec.msgpack.encode(plan))
        argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            str(plan_path),
            str(_result_path(workdir, g)),
        ]
        processes.append(subprocess.Popen(argv, cwd=ROOT))
    server_process = psutil.Process(server.process.pid)
    time.sleep(max(0.0, start_at + warmup_s - SAMPLE_LEAD_S - time.time()))
    before = Sample.take(server, server_process)
    time.sleep(max(0.0, start_at + warmup_s + duration_s - time.time()))
    after = Sample.take(server, server_process)
    results = []
    for g, process in enumerate(processes):
        if process.wait() != 0:
            raise CheckFailed(f"load generator exited with {process.returncode}")
        results.append(msgspec.msgpack.decode(_result_path(workdir, g).read_bytes(), type=Result))
    return _merge(
        server.name, name, mode, connections, rate, results,
        server_cpu=after.server_cpu_since(before),
        postgres_cpu=after.postgres_cpu_since(before) if server.database else None,
        ledger=after.ledger_since(before),
        sampled_s=after.at - before.at,
    )  # fmt: skip


def _merge(
    server: str,
    name: str,
    mode: Literal["closed", "open"],
    connections: int,
    rate: float,
    results: list[Result],
    *,
    server_cpu: float,
    postgres_cpu: float | None,
    ledger: Ledger | None,
    sampled_s: float,
) -> Phase:
    statuses: Counter[int] = Counter()
    window_statuses: Counter[int] = Counter()
    for result in results:
        statuses.update(result.statuses)
        window_statuses.update(result.window_statuses)
    return Phase(
        server=server,
        name=name,
        mode=mode,
        connections=connections,
        offered=rate,
        statuses=statuses,
        window_statuses=window_statuses,
        window_s=results[0].window_s,
        latencies=sorted(x for r in results for x in r.latencies_s),
        send_lags=sorted(x for r in results for x in r.send_lags_s),
        generator_cpu=[r.cpu_s / r.window_s for r in results],
        server_cpu=server_cpu,
        postgres_cpu=postgres_cpu,
        ledger=ledger,
        sampled_s=sampled_s,
        connection_errors=sum(r.connection_errors for r in results),
        unanswered=sum(r.unanswered for r in results),
        error_samples=[s for r in results for s in r.error_samples],
    )


def saturation_and_half(
    server: Server, pool: list[bytes], args: argparse.Namespace, workdir: Path
) -> list[Phase]:
    common = {"generators": args.generators, "workdir": workdir, "duration_s": args.duration}
    saturation = run_phase(
        server, "saturation", pool, mode="closed", connections=args.connections, rate=0.0,
        warmup_s=args.warmup, **common,
    )  # fmt: skip
    half = run_phase(
        server, "at half", pool, mode="open", connections=args.connections,
        rate=HALF * saturation.acked_per_s, warmup_s=OPEN_WARMUP_S, **common,
    )  # fmt: skip
    return [saturation, half]


# --- probo --------------------------------------------------------------------------------


@dataclass
class ProboRun:
    phases: list[Phase]
    orders_in_database: int
    taker_orders_with_fills: int
    open_orders_per_user_market_max: int
    audit: str


async def _database_counts(url: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(url)
    try:
        orders = await conn.fetchval("SELECT count(*) FROM orders")
        crossed = await conn.fetchval("SELECT count(DISTINCT taker_order_id) FROM trades")
        open_max = await conn.fetchval(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM orders "
            "WHERE status = 'open' GROUP BY user_id, market_id) AS per_user_market"
        )
    finally:
        await conn.close()
    return orders, crossed, open_max


def _delete_redis_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
    finally:
        client.close()


async def _set_up(server: Server, phones: list[str], markets: int, outbox: Path) -> list[bytes]:
    """The order pool of `phones[1:]`, logged in and funded, on `markets` new markets
    created by the admin `phones[0]`."""
    await server.wait_ready("/readyz")
    async with httpx.AsyncClient(base_url=server.base, timeout=30, limits=SETUP_LIMITS) as http:
        [admin_token] = await _log_in(http, phones[:1], outbox)
        market_ids = await _create_markets(http, admin_token, markets)
        tokens = await _log_in(http, phones[1:], outbox)
        await _deposit(http, tokens)
    print(f"set up: {len(tokens)} funded users, {len(market_ids)} markets", flush=True)
    return order_pool(tokens, market_ids, POOL_REQUESTS, SEED)


async def _after_run(server: Server, database_url: str) -> tuple[int, int, int]:
    async with httpx.AsyncClient(base_url=server.base, timeout=10) as http:
        ready = await http.get("/readyz")
    if ready.status_code != 200:
        raise CheckFailed(f"/readyz after the run: {ready.status_code} {ready.text}")
    return await _database_counts(database_url)


@dataclass
class ProboServer:
    """`probo serve` for a bench: rate limits out of the way, the outbox SMS provider,
    the first of `phones` an admin, a Redis key prefix of its own."""

    server: Server
    phones: list[str]
    outbox: Path
    redis_key_prefix: str


def probo_server(
    name: str, users: int, database_name: str, database_url: str, redis_url: str, workdir: Path
) -> ProboServer:
    phones = _phones(users + 1, random.Random(SEED))
    outbox = workdir / "sms-outbox.jsonl"
    prefix = f"probo-{name}-{uuid.uuid4().hex[:8]}:"
    port = _free_port()
    env = _clean_env(
        PROBO_DATABASE_URL=database_url,
        PROBO_REDIS_URL=redis_url,
        PROBO_REDIS_KEY_PREFIX=prefix,
        PROBO_PORT=str(port),
        PROBO_DATA_DIR=str(workdir / "data"),
        PROBO_COOKIE_SECURE="false",
        PROBO_LOG_LEVEL="WARNING",
        PROBO_DEMO="false",
        PROBO_ORDER_RATE_LIMIT="1000000",
        PROBO_AUTH_IP_RATE_LIMIT="100000000",
        PROBO_AUTH_VERIFY_IP_RATE_LIMIT="100000000",
        PROBO_ADMIN_PHONES=phones[0],
        PROBO_SMS_PROVIDER="outbox",
        PROBO_SMS_OUTBOX=str(outbox),
    )
    argv = [sys.executable, "-m", "probo", "serve"]
    server = Server("probo", argv, env, port, workdir / "probo.log", database_name)
    return ProboServer(server, phones, outbox, prefix)


def run_probo(
    args: argparse.Namespace, database_name: str, database_url: str, redis_url: str, workdir: Path
) -> tuple[ProboRun, list[bytes]]:
    probo = probo_server("bench-load", args.users, database_name, database_url, redis_url, workdir)
    server, phones, outbox, prefix = (
        probo.server,
        probo.phones,
        probo.outbox,
        probo.redis_key_prefix,
    )
    try:
        pool = asyncio.run(_set_up(server, phones, args.markets, outbox))
        phases = saturation_and_half(server, pool, args, workdir)
        orders, crossed, open_max = asyncio.run(_after_run(server, database_url))
    except httpx.HTTPError as exc:
        server.check_running()
        raise CheckFailed(f"probo did not answer: {exc!r}; its log: {server.log_tail()}") from exc
    finally:
        returncode = server.stop()
        _delete_redis_keys(redis_url, prefix)
    if returncode != 0:
        raise CheckFailed(f"probo serve exited with {returncode}: {server.log_tail()}")
    acked = sum(phase.statuses[201] for phase in phases)
    if orders < acked:
        raise CheckFailed(f"{acked} orders answered 201 but only {orders} in the database")
    audit = subprocess.run(
        [sys.executable, "-m", "probo", "audit"],
        env=_clean_env(PROBO_DATABASE_URL=database_url, PROBO_DATA_DIR=str(workdir / "data")),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if audit.returncode != 0:
        raise CheckFailed(f"probo audit failed: {audit.stdout}{audit.stderr}")
    return ProboRun(phases, orders, crossed, open_max, audit.stdout.strip()), pool


def run_floor(pool: list[bytes], args: argparse.Namespace, workdir: Path) -> list[Phase]:
    port = _free_port()
    argv = [sys.executable, "-m", "bench.floor_app", "--port", str(port)]
    server = Server("floor", argv, _clean_env(), port, workdir / "floor.log")
    try:
        asyncio.run(server.wait_ready("/"))
        return saturation_and_half(server, pool, args, workdir)
    finally:
        server.stop()


# --- report -------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f}"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:4.0f}%"


def report(probo: ProboRun, floor: list[Phase], args: argparse.Namespace) -> None:
    phases = [*probo.phases, *floor]
    print()
    print(
        f"Order entry under load: {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, {args.users} users, {args.markets} markets, "
        f"{CROSSING_FRACTION:.0%} crossing, {args.connections} connections, "
        f"{args.generators} generator process(es), windows of {args.duration:g} s"
    )
    print(
        f"{'server':<6} {'phase':<10} {'offered/s':>9} {'201/s':>8} {'other':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7} {'lag p99':>7} "
        f"{'gen cpu':>8} {'srv cpu':>7} {'pg cpu':>6}"
    )
    for p in phases:
        p50, p99, p999 = (percentile(p.latencies, q) for q in PERCENTILES)
        offered = "unbound" if p.mode == "closed" else f"{p.offered:,.0f}"
        lag = _ms(percentile(p.send_lags, 0.99)) if p.send_lags else "      -"
        generator_cpu = "+".join(_percent(c).strip() for c in p.generator_cpu)
        postgres_cpu = "-" if p.postgres_cpu is None else _percent(p.postgres_cpu)
        print(
            f"{p.server:<6} {p.name:<10} {offered:>9} {p.acked_per_s:>8,.0f} {p.other_answers:>6} "
            f"{_ms(p50)} {_ms(p99)} {_ms(p999):>8} {_ms(percentile(p.latencies, 1.0))} {lag} "
            f"{generator_cpu:>8} {_percent(p.server_cpu):>7} {postgres_cpu:>6}"
        )
    for p in phases:
        if p.ledger and p.ledger.batches:
            print(
                f"  {p.server} {p.name}: ledger writer {p.ledger.batches / p.sampled_s:,.0f} "
                f"batches/s of {p.ledger.entries / p.ledger.batches:,.1f} entries, "
                f"{p.ledger.seconds / p.ledger.batches * 1000:.2f} ms per commit, "
                f"committing {_percent(p.ledger.seconds / p.sampled_s).strip()} of the time"
            )
    for p in phases:
        if p.other_answers or p.connection_errors or p.unanswered:
            print(
                f"  {p.server} {p.name}: answers {dict(p.window_statuses)}, connection errors "
                f"{p.connection_errors}, unanswered at the end {p.unanswered}"
            )
            for sample in p.error_samples:
                print(f"    {sample}")
    probo_saturation, probo_half = probo.phases
    ratio = probo_saturation.acked_per_s / floor[0].acked_per_s
    p99_ms = percentile(probo_half.latencies, 0.99) * 1000
    acked = sum(p.statuses[201] for p in probo.phases)
    print(
        f"probo saturation / floor saturation: {ratio:.2f} "
        f"(target >= {TARGET_FLOOR_RATIO}: {'PASS' if ratio >= TARGET_FLOOR_RATIO else 'FAIL'})"
    )
    print(
        f"probo p99 at half of saturation: {p99_ms:.2f} ms "
        f"(target <= {TARGET_P99_MS:g} ms: {'PASS' if p99_ms <= TARGET_P99_MS else 'FAIL'})"
    )
    print(
        f"durability: {acked:,} orders answered 201 (warm-ups included), "
        f"{probo.orders_in_database:,} in the database; /readyz 200; {probo.audit}"
    )
    print(
        f"flow: {probo.taker_orders_with_fills / probo.orders_in_database:.0%} of orders filled "
        f"on arrival; most open orders of one user in one market "
        f"{probo.open_orders_per_user_market_max} (cap {OPEN_ORDERS_PER_USER_MAX})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--markets", type=int, default=MARKETS)
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    parser.add_argument("--generators", type=int, default=1, help="load generator processes")
    parser.add_argument("--warmup", type=float, default=DEFAULT_WARMUP_S, help="seconds")
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="seconds")
    args = parser.parse_args(argv)

    with (
        postgres_admin_url() as admin_url,
        redis_server_url() as redis_url,
        tempfile.TemporaryDirectory(prefix="probo-bench-load-") as tmp,
    ):
        workdir = Path(tmp)
        name, database_url = asyncio.run(fresh_database(admin_url))
        try:
            probo, pool = run_probo(args, name, database_url, redis_url, workdir)
            floor = run_floor(pool, args, workdir)
        except CheckFailed as exc:
            print(f"CHECK FAILED: {exc}")
            sys.exit(1)
        finally:
            asyncio.run(drop_database(admin_url, name))
    report(probo, floor, args)


if __name__ == "__main__":
    main()
