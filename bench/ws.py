"""WebSocket fan-out: 1,000 subscribers of one market while orders flow over HTTP.

    make bench-ws                                 # = python -m bench.ws, the defaults
    python -m bench.ws --compression none --subscribers 500 --duration 10

Set-up (not timed), as in bench/load.py and with its functions: a fresh database
(bench/_servers.py; PROBO_BENCH_DATABASE_URL and PROBO_BENCH_REDIS_URL name the
servers, embedded ones start otherwise), `probo serve` in a child process with rate
limits out of the way, 1,000 users logged in through the API and funded, and ONE
market (`--markets`: more spread the flow, the subscribers follow the first). The
order flow is bench/load.py's pool (`order_pool`: 70% resting buy YES/NO limits, 30%
crossing ioc buys that mint against resting bids), driven open loop at `--rate` orders/s
(default 2,000) by bench/loadgen.py in separate processes, latency counted from each
request's scheduled send time.

Two phases of the same flow, each a warm-up then a `--duration` window:

- A, no subscribers: the rate of 201 answers (durable, acknowledged orders) and the
  order-entry latency;
- B, `--subscribers` WebSocket connections (bench/wsclients.py in a process of its own,
  bare asyncio protocols, offering permessage-deflate like a browser unless
  `--compression none`; probo serve declines it) all subscribed to the market. They connect in batches before
  the flow starts and the flow waits until every one has its snapshot. The clients read
  every message on every connection; for every trade of every `trade` message they take
  receive time - `created_at` (the engine's decision time, before the commit: an upper
  bound of commit-to-client latency), for trades created inside the window.

Reported per phase: offered and achieved order rate, order latency p50/p99/p99.9, CPU
over the window (100% = one core) of the load generator, the server, the WebSocket
clients' process and Postgres (the whole cluster but other databases' client backends);
for phase B the subscribers' latency p50/p99/p99.9/max, messages/s and MB/s delivered
(payload bytes, after any decompression), and disconnects by close code (4008: the
server kicked a connection whose send queue of 512 messages filled). Order-entry loss =
1 - rate_B / rate_A.

Checked (the process exits 1 otherwise): every connection gets its snapshot first and
`book` seqs one by one after it (no gap, no repeat); on every connection trade ids
arrive strictly increasing and, for connections still open at the end, they are
exactly the market's trades in the database committed after the subscriptions (count,
first, last, sum); `/readyz` is 200 at the end, the `orders` table holds every order
answered 201, and `probo audit` passes. Targets (reported, not enforced): subscribers'
p99 <= 100 ms, order-entry loss <= 15%.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import msgspec
import psutil

from bench import wsclients
from bench._servers import drop_database, fresh_database, postgres_admin_url, redis_server_url
from bench.load import (
    GENERATOR_START_DELAY_S,
    PERCENTILES,
    POOL_REQUESTS,
    ROOT,
    SAMPLE_LEAD_S,
    SEED,
    SETUP_LIMITS,
    USERS,
    CheckFailed,
    Phase,
    Sample,
    Server,
    _after_run,
    _clean_env,
    _create_markets,
    _delete_redis_keys,
    _deposit,
    _log_in,
    _merge,
    _percent,
    _result_path,
    order_pool,
    percentile,
    probo_server,
)
from bench.loadgen import Plan, Result

MARKETS = 1
RATE = 2000.0  # orders/s offered, open loop
SUBSCRIBERS = 1000
CONNECT_BATCH = 50  # WebSocket connections opened at once
DEFAULT_CONNECTIONS = 256  # HTTP keep-alive connections of the load generator
DEFAULT_WARMUP_S = 3.0
DEFAULT_DURATION_S = 20.0
SETTLE_S = 1.0  # after the last answer, for the last commits' messages to arrive
READY_TIMEOUT_S = 180.0  # for every subscriber's snapshot
CLIENTS_STOP_TIMEOUT_S = 120.0  # the clients compute their latencies when they stop
TARGET_P99_MS = 100.0
TARGET_LOSS = 0.15
WS_METRICS = ("probo_ws_kicked_total", "probo_ws_connections")


# --- the WebSocket clients' process -------------------------------------------------------


class Subscribers:
    """bench/wsclients.py in a child process: connected and subscribed on creation."""

    def __init__(self, server: Server, channel: str, args: argparse.Namespace, workdir: Path):
        plan = wsclients.Plan(
            url=f"ws://127.0.0.1:{server.port}/api/v1/ws",
            channel=channel,
            connections=args.subscribers,
            batch=args.batch,
            compression=None if args.compression == "none" else args.compression,
        )
        plan_path = workdir / "ws-plan.msgpack"
        plan_path.write_bytes(msgspec.msgpack.encode(plan))
        self.result_path = workdir / "ws-result.msgpack"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.wsclients", str(plan_path), str(self.result_path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.psutil = psutil.Process(self.process.pid)
        line = _read_line(self.process, READY_TIMEOUT_S)
        if not line.startswith("ready "):
            raise CheckFailed(f"ws clients did not get ready: {line!r}")
        _, connected, seconds = line.split()
        self.connected = int(connected)
        self.connect_s = float(seconds)

    def measure(self, start: float, end: float) -> None:
        self._say(f"{start!r} {end!r}")

    def stop(self) -> wsclients.Result:
        self._say("stop")
        if self.process.wait(CLIENTS_STOP_TIMEOUT_S) != 0:
            raise CheckFailed(f"ws clients exited with {self.process.returncode}")
        return msgspec.msgpack.decode(self.result_path.read_bytes(), type=wsclients.Result)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """A line of the child's stdout, or "" when it exits or `timeout` passes."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline().strip()


# --- phases -------------------------------------------------------------------------------


@dataclass
class FlowPhase:
    orders: Phase
    clients_cpu: float | None  # the ws clients' process over the window, from psutil
    ws: wsclients.Result | None
    kicked: float  # probo_ws_kicked_total over the phase


def run_flow(
    server: Server,
    name: str,
    pool: list[bytes],
    args: argparse.Namespace,
    workdir: Path,
    subscribers: Subscribers | None,
) -> FlowPhase:
    """bench.load.run_phase in open mode at `args.rate`, telling `subscribers` the window."""
    start_at = time.time() + GENERATOR_START_DELAY_S
    window_start, window_end = start_at + args.warmup, start_at + args.warmup + args.duration
    if subscribers is not None:
        subscribers.measure(window_start, window_end)
    kicked_before = _ws_metrics(server)[0]
    processes = []
    for g in range(args.generators):
        plan = Plan(
            host="127.0.0.1",
            port=server.port,
            mode="open",
            connections=args.connections // args.generators
            + (g < args.connections % args.generators),
            start_at=start_at,
            warmup_s=args.warmup,
            duration_s=args.duration,
            rate=args.rate / args.generators,
            requests=pool,
            first_request=g * len(pool) // args.generators,
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
    time.sleep(max(0.0, window_start - SAMPLE_LEAD_S - time.time()))
    before = Sample.take(server, server_process)
    clients_before = _cpu_s(subscribers.psutil) if subscribers else 0.0
    time.sleep(max(0.0, window_end - time.time()))
    after = Sample.take(server, server_process)
    clients_after = _cpu_s(subscribers.psutil) if subscribers else 0.0
    results = []
    for g, process in enumerate(processes):
        if process.wait() != 0:
            raise CheckFailed(f"load generator exited with {process.returncode}")
        results.append(msgspec.msgpack.decode(_result_path(workdir, g).read_bytes(), type=Result))
    time.sleep(SETTLE_S)
    ws = subscribers.stop() if subscribers is not None else None
    kicked_after = _ws_metrics(server)[0]
    orders = _merge(
        "probo", name, "open", args.connections, args.rate, results,
        server_cpu=after.server_cpu_since(before),
        postgres_cpu=after.postgres_cpu_since(before),
        ledger=after.ledger_since(before),
        sampled_s=after.at - before.at,
    )  # fmt: skip
    clients_cpu = (clients_after - clients_before) / (after.at - before.at) if subscribers else None
    return FlowPhase(orders, clients_cpu, ws, kicked_after - kicked_before)


def _cpu_s(process: psutil.Process) -> float:
    cpu = process.cpu_times()
    return cpu.user + cpu.system + cpu.children_user + cpu.children_system


def _ws_metrics(server: Server) -> tuple[float, float]:
    values = dict.fromkeys(WS_METRICS, 0.0)
    for line in httpx.get(f"{server.base}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return values[WS_METRICS[0]], values[WS_METRICS[1]]


async def _max_trade_id(database_url: str, market_id: int) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(
            "SELECT coalesce(max(id), 0) FROM trades WHERE market_id = $1", market_id
        )
    finally:
        await conn.close()


async def _trades_after(
    database_url: str, market_id: int, after_id: int
) -> tuple[int, int, int, int]:
    """(count, first, last, sum) of the market's trade ids above `after_id`."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*), coalesce(min(id), 0), coalesce(max(id), 0), coalesce(sum(id), 0) "
            "FROM trades WHERE market_id = $1 AND id > $2",
            market_id,
            after_id,
        )
    finally:
        await conn.close()
    return tuple(int(x) for x in row)  # type: ignore[return-value]


# --- the run ------------------------------------------------------------------------------


@dataclass
class Run:
    a: FlowPhase
    b: FlowPhase
    subscribers: int
    connect_s: float
    trades_expected: tuple[int, int, int, int]
    orders_in_database: int
    audit: str
    failures: list[str]


async def _set_up(
    server: Server, phones: list[str], markets: int, outbox: Path
) -> tuple[list[bytes], int]:
    """bench.load's set-up: the order pool on `markets` new markets, and the first one."""
    await server.wait_ready("/readyz")
    async with httpx.AsyncClient(base_url=server.base, timeout=30, limits=SETUP_LIMITS) as http:
        [admin_token] = await _log_in(http, phones[:1], outbox)
        market_ids = await _create_markets(http, admin_token, markets)
        tokens = await _log_in(http, phones[1:], outbox)
        await _deposit(http, tokens)
    print(f"set up: {len(tokens)} funded users, {len(market_ids)} market(s)", flush=True)
    return order_pool(tokens, market_ids, POOL_REQUESTS, SEED), market_ids[0]


def _check_ws(ws: wsclients.Result, expected: tuple[int, int, int, int], asked: int) -> list[str]:
    failures = []
    if ws.connected != asked:
        failures.append(f"{asked - ws.connected} of {asked} subscribers never got a snapshot")
    if ws.errors:
        failures.append(f"ws client errors: {ws.errors}")
    if ws.seq_gaps:
        failures.append(f"{ws.seq_gaps} book seq gaps, e.g. {ws.seq_gap_samples}")
    if ws.disorder:
        failures.append(f"{ws.disorder} trade ids not above the previous one on their connection")
    for count, first, last, total, connections in ws.trade_id_summaries:
        if (count, first, last, total) != expected:
            failures.append(
                f"{connections} connection(s) got trades (count, first, last, sum) = "
                f"{(count, first, last, total)}, the database has {expected}"
            )
    return failures


def run(args: argparse.Namespace, database_name: str, database_url: str, redis_url: str,
        workdir: Path) -> Run:  # fmt: skip
    probo = probo_server("bench-ws", args.users, database_name, database_url, redis_url, workdir)
    server, phones, outbox, prefix = (
        probo.server,
        probo.phones,
        probo.outbox,
        probo.redis_key_prefix,
    )
    subscribers: Subscribers | None = None
    try:
        pool, market_id = asyncio.run(_set_up(server, phones, args.markets, outbox))
        a = run_flow(server, "A: no subscribers", pool, args, workdir, None)
        print(f"phase A: {a.orders.acked_per_s:,.0f} orders/s", flush=True)
        subscribers = Subscribers(server, f"market:{market_id}", args, workdir)
        print(
            f"{subscribers.connected} subscribers got their snapshots in "
            f"{subscribers.connect_s:.1f} s",
            flush=True,
        )
        baseline = asyncio.run(_max_trade_id(database_url, market_id))
        b = run_flow(server, f"B: {args.subscribers} subs", pool, args, workdir, subscribers)
        expected = asyncio.run(_trades_after(database_url, market_id, baseline))
        orders, _, _ = asyncio.run(_after_run(server, database_url))
    except httpx.HTTPError as exc:
        server.check_running()
        raise CheckFailed(f"probo did not answer: {exc!r}; its log: {server.log_tail()}") from exc
    finally:
        if subscribers is not None:
            subscribers.kill()
        returncode = server.stop()
        _delete_redis_keys(redis_url, prefix)
    if returncode != 0:
        raise CheckFailed(f"probo serve exited with {returncode}: {server.log_tail()}")
    assert b.ws is not None
    failures = _check_ws(b.ws, expected, args.subscribers)
    acked = sum(p.orders.statuses[201] for p in (a, b))
    if orders < acked:
        failures.append(f"{acked} orders answered 201 but only {orders} in the database")
    audit = subprocess.run(
        [sys.executable, "-m", "probo", "audit"],
        env=_clean_env(PROBO_DATABASE_URL=database_url, PROBO_DATA_DIR=str(workdir / "data")),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if audit.returncode != 0:
        failures.append(f"probo audit failed: {audit.stdout}{audit.stderr}")
    return Run(a, b, subscribers.connected, subscribers.connect_s, expected, orders,
               audit.stdout.strip(), failures)  # fmt: skip


# --- report -------------------------------------------------------------------------------


def histogram_percentile(histogram: dict[int, int], count: int, fraction: float) -> float:
    """The upper edge of the bucket holding the `fraction` quantile, in seconds."""
    if not count:
        return float("nan")
    rank = max(1, int(-(-fraction * count // 1)))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return (bucket + 1) * wsclients.HISTOGRAM_STEP_S
    return float("nan")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def report(run: Run, args: argparse.Namespace) -> None:
    print()
    print(
        f"WebSocket fan-out: {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, {args.users} users, {args.markets} market(s), "
        f"{args.rate:,.0f} orders/s offered, {args.connections} HTTP connections, "
        f"{args.subscribers} subscribers (compression offered: {args.compression}, "
        f"taken on {run.b.ws.compressed if run.b.ws else 0}), "
        f"windows of {args.duration:g} s"
    )
    print(
        f"{'phase':<18} {'201/s':>7} {'other':>5} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} "
        f"{'gen cpu':>7} {'srv cpu':>7} {'ws cpu':>6} {'pg cpu':>6}"
    )
    for phase in (run.a, run.b):
        p = phase.orders
        p50, p99, p999 = (percentile(p.latencies, q) for q in PERCENTILES)
        generator_cpu = "+".join(_percent(c).strip() for c in p.generator_cpu)
        ws_cpu = "-" if phase.clients_cpu is None else _percent(phase.clients_cpu)
        print(
            f"{p.name:<18} {p.acked_per_s:>7,.0f} {p.other_answers:>5} {_ms(p50):>7} "
            f"{_ms(p99):>7} {_ms(p999):>8} {generator_cpu:>7} {_percent(p.server_cpu):>7} "
            f"{ws_cpu:>6} {_percent(p.postgres_cpu or 0.0):>6}"
        )
    for phase in (run.a, run.b):
        p = phase.orders
        if p.ledger and p.ledger.batches:
            print(
                f"  {p.name}: ledger writer {p.ledger.batches / p.sampled_s:,.0f} batches/s of "
                f"{p.ledger.entries / p.ledger.batches:,.1f} entries, "
                f"{p.ledger.seconds / p.ledger.batches * 1000:.2f} ms per commit"
            )
        if p.other_answers or p.connection_errors or p.unanswered:
            print(
                f"  {p.name}: answers {dict(p.window_statuses)}, connection errors "
                f"{p.connection_errors}, unanswered at the end {p.unanswered}"
            )
            for sample in p.error_samples:
                print(f"    {sample}")
    ws = run.b.ws
    assert ws is not None
    quantiles = [
        histogram_percentile(ws.latency_histogram, ws.latency_count, q) for q in PERCENTILES
    ]
    disconnects = sum(ws.close_codes.values())
    print(
        f"subscribers: {run.subscribers} connected in {run.connect_s:.1f} s; over the window "
        f"{ws.window_messages / ws.window_s:,.0f} messages/s "
        f"({ws.window_bytes / ws.window_s / 1e6:,.1f} MB/s of payload; per connection "
        f"{ws.window_messages_min:,}..{ws.window_messages_max:,} messages); "
        f"messages by type {ws.messages_by_type}, {ws.distinct_messages:,} distinct"
    )
    print(
        f"commit-to-client latency (receive - created_at), {ws.latency_count:,} trade receipts: "
        f"p50 {_ms(quantiles[0])} / p99 {_ms(quantiles[1])} / p99.9 {_ms(quantiles[2])} / "
        f"max {_ms(ws.latency_max_s)} ms"
    )
    print(
        f"disconnects: {disconnects} {ws.close_codes or ''} (server kicked "
        f"{run.b.kicked:.0f}); seq gaps {ws.seq_gaps}; trade ids out of order {ws.disorder}; "
        f"trades after the subscriptions (count, first, last, sum) {run.trades_expected}, "
        f"connections with exactly those: "
        f"{sum(n for *key, n in ws.trade_id_summaries if tuple(key) == run.trades_expected)}"
    )
    rate_a, rate_b = run.a.orders.acked_per_s, run.b.orders.acked_per_s
    loss = 1 - rate_b / rate_a
    p99_ms = quantiles[1] * 1000
    print(
        f"subscribers' p99: {p99_ms:,.1f} ms "
        f"(target <= {TARGET_P99_MS:g} ms: {'PASS' if p99_ms <= TARGET_P99_MS else 'FAIL'})"
    )
    print(
        f"order-entry loss: 1 - {rate_b:,.0f} / {rate_a:,.0f} = {loss:.1%} "
        f"(target <= {TARGET_LOSS:.0%}: {'PASS' if loss <= TARGET_LOSS else 'FAIL'})"
    )
    print(
        f"durability: {run.orders_in_database:,} orders in the database; /readyz 200; {run.audit}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ws", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--markets", type=int, default=MARKETS)
    parser.add_argument("--rate", type=float, default=RATE, help="orders/s, open loop")
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
    parser.add_argument("--batch", type=int, default=CONNECT_BATCH, help="connections at once")
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    parser.add_argument("--generators", type=int, default=1, help="load generator processes")
    parser.add_argument("--warmup", type=float, default=DEFAULT_WARMUP_S, help="seconds")
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="seconds")
    args = parser.parse_args(argv)

    with (
        postgres_admin_url() as admin_url,
        redis_server_url() as redis_url,
        tempfile.TemporaryDirectory(prefix="probo-bench-ws-") as tmp,
    ):
        workdir = Path(tmp)
        name, database_url = asyncio.run(fresh_database(admin_url))
        try:
            result = run(args, name, database_url, redis_url, workdir)
        except CheckFailed as exc:
            print(f"CHECK FAILED: {exc}")
            sys.exit(1)
        finally:
            asyncio.run(drop_database(admin_url, name))
    report(result, args)
    if result.failures:
        for failure in result.failures:
            print(f"CHECK FAILED: {failure}")
        sys.exit(1)


if __name__ == "__main__":
    main()
