"""Matching-engine throughput, latency and memory: probo's `Exchange` against
`lightmatchingengine` (pure Python) and `liquibook` (C++ behind SWIG).

The same deterministic flow (bench/flow.py) goes through every engine: N commands on
one market, 19 YES price levels 50..950, 1,000 funded users, about 30% of the places
crossing, 5% cancels of open orders, buy/sell YES/NO mixed. The other engines get it
in YES book terms (buy YES @p and sell NO @(1000-p) are bids at p; sell YES @p and buy
NO @(1000-p) are asks at p), cancels naming the same logical order. The flow, the
commands and the other engines' order objects are all built before any timing.

Per engine and GC mode: orders/s over the wall time of the whole flow, and the latency
of each call (perf_counter_ns around it) at p50/p99/p99.9/max. For probo also bytes
per resting order (tracemalloc, 200,000 resting non-crossing orders against the same
accounts with an empty book). After each run the engine's final state is checked
against the flow's shadow.

GC modes: `default` is CPython's own (thresholds as found, a gc.collect() before the
loop); `tuned` is gc.collect(); gc.freeze() and raised thresholds (--tuned-threshold);
`off` is gc.disable() for the loop.

    python -m bench.engine                       # N = 1,000,000, all engines, both GC modes
    python -m bench.engine -n 100000 --only lme,liquibook
    python -m bench.engine -n 20000 --check      # probo command by command against the flow
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import platform
import random
import sys
import time
import tracemalloc
from array import array
from dataclasses import dataclass

from bench import flow as flowmod
from bench.flow import ASK, BID, CANCEL, MARKET_ID, PAYOUT, TICK, Flow, generate
from probo.orderbook.types import (
    OrderAccepted,
    OrderCanceled,
    PlaceOrder,
    TradeExecuted,
)

ENGINES = ("probo", "lme", "liquibook")
TARGET_RATIO = 1.5
TARGET_P999_US = 50.0
TARGET_BYTES = 300
INSTRUMENT = "X"
DEFAULT_THRESHOLD = gc.get_threshold()


class EngineMismatch(AssertionError):
    pass


@dataclass
class Result:
    engine: str
    gc_mode: str
    n: int
    wall_ns: int
    lat: array  # ns per command
    check: str  # "ok" or what differed

    @property
    def rate(self) -> float:
        return self.n / (self.wall_ns / 1e9)


# -- GC ------------------------------------------------------------------------------


def _gc_prepare(mode: str, tuned_threshold: tuple[int, ...]) -> None:
    gc.unfreeze()
    gc.set_threshold(*DEFAULT_THRESHOLD)
    gc.enable()
    gc.collect()
    if mode == "tuned":
        gc.freeze()
        gc.set_threshold(*tuned_threshold)
    elif mode == "off":
        gc.freeze()
        gc.disable()


def _gc_restore() -> None:
    gc.enable()
    gc.set_threshold(*DEFAULT_THRESHOLD)
    gc.unfreeze()
    gc.collect()


# -- probo ---------------------------------------------------------------------------


def _probo_exchange(flow: Flow):
    from probo.orderbook import Exchange

    ex = Exchange()
    ex.open_market(MARKET_ID, tick=TICK)
    for u in range(1, flow.users + 1):
        ex.credit(u, flow.funding)
    for cmd in flow.warmup:
        events = ex.place(cmd)
        if not isinstance(events[0], OrderAccepted):
            raise EngineMismatch(f"warm-up {cmd} -> {events}")
    return ex


def _probo_check_state(ex, flow: Flow, events: int) -> str:
    problems = []
    expected_events = sum(flow.expected_events)
    if events != expected_events:
        problems.append(f"{events} events, the flow expects {expected_events}")
    for u in range(1, flow.users + 1):
        got = (ex.cash(u), ex.locked_cash(u), tuple(ex.position(u, MARKET_ID)))
        want = (flow.final_cash[u], flow.final_locked_cash[u], flow.final_position[u])
        if got != want:
            problems.append(f"user {u}: (cash, locked, position) {got} != {want}")
            break
    if ex.escrow(MARKET_ID) != flow.final_escrow:
        problems.append(f"escrow {ex.escrow(MARKET_ID)} != {flow.final_escrow}")
    open_ids = sorted(o.order_id for o in ex.open_orders(MARKET_ID))
    want_ids = [oid for oid, _ in flow.final_open]
    if open_ids != want_ids:
        problems.append(f"{len(open_ids)} open orders, the flow expects {len(want_ids)}")
    try:
        ex.validate()
    except AssertionError as e:
        problems.append(f"validate: {e}")
    return "ok" if not problems else "; ".join(problems)


def run_probo(flow: Flow, gc_mode: str, tuned_threshold) -> Result:
    ex = _probo_exchange(flow)
    place, cancel = ex.place, ex.cancel
    cmds, op, n = flow.commands, flow.op, flow.n
    lat = array("q", bytes(8 * n))
    pc = time.perf_counter_ns
    events = 0
    _gc_prepare(gc_mode, tuned_threshold)
    start = pc()
    for i in range(n):
        cmd = cmds[i]
        if op[i] == CANCEL:
            t0 = pc()
            evs = cancel(cmd)
            t1 = pc()
        else:
            t0 = pc()
            evs = place(cmd)
            t1 = pc()
        lat[i] = t1 - t0
        events += len(evs)
    wall = pc() - start
    _gc_restore()
    return Result("probo", gc_mode, n, wall, lat, _probo_check_state(ex, flow, events))


def check_probo(flow: Flow) -> None:
    """Command by command: the events each command gets against the flow's shadow."""
    ex = _probo_exchange(flow)
    next_oid = flow.warmup_orders + 1
    for i, cmd in enumerate(flow.commands):
        evs = ex.cancel(cmd) if flow.op[i] == CANCEL else ex.place(cmd)
        ok = len(evs) == flow.expected_events[i]
        if ok and flow.op[i] == CANCEL:
            ok = isinstance(evs[0], OrderCanceled) and evs[0].reason == "user"
        elif ok:
            ok = isinstance(evs[0], OrderAccepted) and evs[0].order_id == next_oid
            ok = ok and all(isinstance(e, TradeExecuted) for e in evs[1:])
            next_oid += 1
        if not ok:
            print(
                f"command {i}: {cmd}\n  expected {flow.expected_events[i]} events, got {len(evs)}:"
            )
            for e in evs:
                print("   ", e)
            print(
                "  repro: python -m bench.engine --check -n",
                flow.n,
                "--seed",
                flow.seed,
                "--depth",
                flow.target_depth,
            )
            raise SystemExit(1)
        if i % 10_000 == 0:
            ex.validate()
    print(
        "check: every command got the events the flow expects;",
        "final state",
        _probo_check_state(ex, flow, sum(flow.expected_events)),
    )


# -- lightmatchingengine -------------------------------------------------------------


def _book_terms(cmd: PlaceOrder) -> tuple[int, int]:
    """(BID/ASK, YES price) of a place."""
    bid = (cmd.outcome == "yes") == (cmd.side == "buy")
    yes_price = cmd.price if cmd.outcome == "yes" else PAYOUT - cmd.price
    return (BID if bid else ASK), yes_price


def run_lme(flow: Flow, gc_mode: str, tuned_threshold) -> Result:
    from lightmatchingengine.lightmatchingengine import LightMatchingEngine, Side

    lme = LightMatchingEngine()
    for cmd in flow.warmup:
        side, price = _book_terms(cmd)
        lme.add_order(INSTRUMENT, price, cmd.quantity, Side.BUY if side == BID else Side.SELL)
    base = lme.curr_order_id + 1  # lme id of timed place ordinal k is base + k
    add, cancel = lme.add_order, lme.cancel_order
    op, price, qty, target, n = flow.op, flow.yes_price, flow.quantity, flow.target, flow.n
    lat = array("q", bytes(8 * n))
    pc = time.perf_counter_ns
    trades = misses = 0
    _gc_prepare(gc_mode, tuned_threshold)
    start = pc()
    for i in range(n):
        o = op[i]
        if o == CANCEL:
            oid = base + target[i]
            t0 = pc()
            r = cancel(oid, INSTRUMENT)
            t1 = pc()
            if r is None:
                misses += 1
        else:
            p, q = price[i], qty[i]
            side = 1 if o == BID else 2
            t0 = pc()
            _order, tr = add(INSTRUMENT, p, q, side)
            t1 = pc()
            trades += len(tr)
        lat[i] = t1 - t0
    wall = pc() - start
    _gc_restore()

    book = lme.order_books[INSTRUMENT]
    levels = {}
    for side, depth in ((BID, book.bids), (ASK, book.asks)):
        for p, orders in depth.items():
            total = sum(o.leaves_qty for o in orders)
            if total:
                levels[(side, p)] = total
    problems = []
    if misses:
        problems.append(f"{misses} cancels not found")
    if levels != flow.final_levels:
        problems.append("book differs from the flow's")
    return Result("lme", gc_mode, n, wall, lat, "ok" if not problems else "; ".join(problems))


# -- liquibook -----------------------------------------------------------------------


def run_liquibook(flow: Flow, gc_mode: str, tuned_threshold) -> Result:
    import liquibook

    class Fills(liquibook.OrderListener):
        def __init__(self) -> None:
            liquibook.OrderListener.__init__(self)
            self.fills = 0
            self.quantity = 0
            self.cancel_rejects = 0
            self.rejects = 0

        def on_fill(self, order, matched_order, fill_qty, fill_cost):
            self.fills += 1
            self.quantity += fill_qty

        def on_cancel_reject(self, order, reason):
            self.cancel_rejects += 1

        def on_reject(self, order, reason):
            self.rejects += 1

        # Pure virtual in the C++ listener: SWIG's director calls each of them.
        def on_accept(self, order):
            pass

        def on_cancel(self, order):
            pass

        def on_replace(self, order, size_delta, new_price):
            pass

        def on_replace_reject(self, order, reason):
            pass

        def on_trigger_stop(self, order):
            pass

    book = liquibook.DepthOrderBook()
    book.set_symbol(INSTRUMENT)
    listener = Fills()
    book.set_order_listener(listener)
    SimpleOrder = liquibook.SimpleOrder
    for cmd in flow.warmup:
        side, price = _book_terms(cmd)
        book.add(SimpleOrder(side == BID, price, cmd.quantity))
    listener.fills = listener.quantity = 0
    op, price, qty, target, n = flow.op, flow.yes_price, flow.quantity, flow.target, flow.n
    # The order objects are liquibook's commands: built before timing, like PlaceOrder.
    orders = [SimpleOrder(op[i] == BID, price[i], qty[i]) for i in range(n) if op[i] != CANCEL]
    add, cancel = book.add, book.cancel
    lat = array("q", bytes(8 * n))
    pc = time.perf_counter_ns
    ordinal = 0
    _gc_prepare(gc_mode, tuned_threshold)
    start = pc()
    for i in range(n):
        if op[i] == CANCEL:
            order = orders[target[i]]
            t0 = pc()
            cancel(order)
            t1 = pc()
        else:
            order = orders[ordinal]
            ordinal += 1
            t0 = pc()
            add(order)
            t1 = pc()
        lat[i] = t1 - t0
    wall = pc() - start
    _gc_restore()

    levels = {}
    for side, depth in ((BID, book.bids()), (ASK, book.asks())):
        for key, tracker in depth.items():
            k = (side, key.price())
            levels[k] = levels.get(k, 0) + tracker.open_qty()
    problems = []
    if listener.fills != flow.trades or listener.quantity != flow.traded_quantity:
        problems.append(
            f"{listener.fills} fills of {listener.quantity}, the flow expects "
            f"{flow.trades} of {flow.traded_quantity}"
        )
    if listener.cancel_rejects or listener.rejects:
        problems.append(f"{listener.cancel_rejects} cancel rejects, {listener.rejects} rejects")
    if levels != flow.final_levels:
        problems.append("book differs from the flow's")
    return Result("liquibook", gc_mode, n, wall, lat, "ok" if not problems else "; ".join(problems))


RUNNERS = {"probo": run_probo, "lme": run_lme, "liquibook": run_liquibook}


# -- memory --------------------------------------------------------------------------


def _resting_orders(count: int, users: int, seed: int):
    """`count` non-crossing orders: bids at YES 50..450, asks at 550..950, all kinds."""
    rng = random.Random(seed)
    for j in range(count):
        user = j % users + 1
        side = BID if rng.random() < 0.5 else ASK
        level = rng.randint(0, 8) if side == BID else rng.randint(10, 18)
        yes_price = (level + 1) * TICK
        sell = rng.random() < 0.5
        kind = flowmod._kind_for(side, sell)
        yield kind, yes_price, rng.randint(1, 10), user


def memory_probo(flow: Flow, count: int) -> float:
    ex = _probo_exchange(flow)  # funded accounts, every user holding YES and NO, empty book
    users = flow.users
    per_user = -(-count // users)
    if per_user * 10 > flow.warmup_contracts:
        raise SystemExit("--mem-orders too large for the warm-up holdings")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for kind, yes_price, q, user in _resting_orders(count, users, flow.seed + 1):
        events = ex.place(flowmod._place_order(user, kind, yes_price, q))
    del events
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    resting = len(ex.open_orders(MARKET_ID))
    if resting != count:
        raise EngineMismatch(f"memory scenario: {resting} resting, expected {count}")
    return (after - before) / count


def memory_lme(flow: Flow, count: int) -> float:
    from lightmatchingengine.lightmatchingengine import LightMatchingEngine

    lme = LightMatchingEngine()
    lme.add_order(INSTRUMENT, 500, 1, 1)
    lme.cancel_order(1, INSTRUMENT)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for kind, yes_price, q, _user in _resting_orders(count, flow.users, flow.seed + 1):
        side = 1 if kind in (flowmod.BUY_YES, flowmod.SELL_NO) else 2
        lme.add_order(INSTRUMENT, yes_price, q, side)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


# -- report --------------------------------------------------------------------------


def _pct(sorted_lat, q: float) -> float:
    if not sorted_lat:
        return float("nan")
    i = min(len(sorted_lat) - 1, int(q * len(sorted_lat)))
    return sorted_lat[i] / 1000


def _summary(lat) -> tuple[float, float, float, float]:
    s = sorted(lat)
    return _pct(s, 0.50), _pct(s, 0.99), _pct(s, 0.999), (s[-1] / 1000 if s else float("nan"))


def _by_kind(result: Result, flow: Flow) -> str:
    parts = []
    groups = {"rest": [], "cross": [], "cancel": []}
    ev = flow.expected_events
    for i, t in enumerate(result.lat):
        if flow.op[i] == CANCEL:
            groups["cancel"].append(t)
        elif ev[i] > 1:
            groups["cross"].append(t)
        else:
            groups["rest"].append(t)
    for name, lat in groups.items():
        p50, _p99, p999, mx = _summary(lat)
        parts.append(f"{name} p50 {p50:.1f} p99.9 {p999:.1f} max {mx:.0f}")
    return " | ".join(parts)


def _machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.machine()}, nproc {nproc}, {model}".rstrip(", ")


def _run_isolated(engine: str, flow: Flow, mode: str, tuned: tuple[int, ...]) -> Result:
    """Run one engine in a child forked now: it shares the flow (copy on write) but none
    of the garbage earlier runs left (lightmatchingengine keeps every order it ever saw)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        status = 0
        try:
            r = RUNNERS[engine](flow, mode, tuned)
            payload = pickle.dumps((r.engine, r.gc_mode, r.n, r.wall_ns, r.lat.tobytes(), r.check))
        except BaseException as exc:  # report it to the parent, whatever it is
            payload = pickle.dumps(repr(exc))
            status = 1
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
        os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pickle.loads(pipe.read())
    _, status = os.waitpid(pid, 0)
    if status != 0 or isinstance(data, str):
        raise RuntimeError(f"{engine}/{mode} failed in its child: {data}")
    name, gc_mode, n, wall_ns, lat_bytes, check = data
    lat = array("q")
    lat.frombytes(lat_bytes)
    return Result(name, gc_mode, n, wall_ns, lat, check)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("-n", type=int, default=1_000_000, help="commands in the timed flow")
    parser.add_argument("--only", default=",".join(ENGINES), help="engines: probo,lme,liquibook")
    parser.add_argument("--gc", default="default,tuned", help="GC modes: default,tuned,off")
    parser.add_argument(
        "--tuned-threshold",
        default="10000,10,100",
        help="gc.set_threshold for the tuned mode (after gc.freeze())",
    )
    parser.add_argument(
        "--depth", type=int, default=2000, help="resting orders the flow keeps near"
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument(
        "--mem-orders",
        type=int,
        default=200_000,
        help="resting orders of the bytes-per-order scenario (0: skip)",
    )
    parser.add_argument(
        "--check", action="store_true", help="only check probo command by command against the flow"
    )
    parser.add_argument(
        "--no-isolate",
        action="store_true",
        help="run every engine in this process (default: each run in a child forked after the flow "
        "is built, so no engine runs on a heap another one filled)",
    )
    args = parser.parse_args(argv)
    engines = [e for e in args.only.split(",") if e]
    modes = [m for m in args.gc.split(",") if m]
    tuned = tuple(int(x) for x in args.tuned_threshold.split(","))
    for e in engines:
        if e not in RUNNERS:
            parser.error(f"unknown engine {e}")
    for m in modes:
        if m not in ("default", "tuned", "off"):
            parser.error(f"unknown gc mode {m}")

    versions = []
    for name in ("lightmatchingengine", "liquibook", "msgspec"):
        try:
            from importlib.metadata import version

            versions.append(f"{name} {version(name)}")
        except Exception:
            versions.append(f"{name} -")
    print(f"python {platform.python_version()} ({platform.python_implementation()}), {_machine()}")
    print("  " + ", ".join(versions))

    started = time.perf_counter()
    flow = generate(args.n, users=args.users, seed=args.seed, target_depth=args.depth)
    print(
        f"flow: {flow.n:,} commands ({flow.places:,} places, {flow.cancels:,} cancels = "
        f"{flow.cancels / flow.n:.1%}), crossing {flow.crossing / max(1, flow.places):.1%} of places, "
        f"sells {flow.sells / max(1, flow.places):.1%} ({flow.sells_converted} turned into buys), "
        f"{flow.trades:,} trades ({', '.join(f'{k} {v:,}' for k, v in flow.trade_kinds.items())}), "
        f"resting at most {flow.max_resting:,}, at the end {len(flow.final_open):,}; "
        f"{flow.users} users, seed {flow.seed}; generated in {time.perf_counter() - started:.1f}s (untimed)"
    )

    per_cross = sorted(
        e - 1 for e, o in zip(flow.expected_events, flow.op, strict=True) if o != CANCEL and e > 1
    )
    if per_cross:
        print(
            f"  trades per crossing order: mean {sum(per_cross) / len(per_cross):.1f}, "
            f"p99 {per_cross[int(0.99 * len(per_cross))]}, p99.9 {per_cross[int(0.999 * len(per_cross))]}, "
            f"max {per_cross[-1]}"
        )

    if args.check:
        check_probo(flow)
        return

    results: list[Result] = []
    for mode in modes:
        for engine in engines:
            if args.no_isolate:
                r = RUNNERS[engine](flow, mode, tuned)
            else:
                r = _run_isolated(engine, flow, mode, tuned)
            results.append(r)
            p50, p99, p999, mx = _summary(r.lat)
            print(
                f"  {engine:<10} gc {mode:<8} {r.rate:>10,.0f} orders/s  p50 {p50:6.1f}  "
                f"p99 {p99:6.1f}  p99.9 {p999:7.1f}  max {mx:9.1f} µs  check: {r.check}",
                flush=True,
            )
            print(f"  {'':<10}    {'':<8} {_by_kind(r, flow)}", flush=True)
            gc.collect()

    mem = {}
    if args.mem_orders:
        if "probo" in engines:
            mem["probo"] = memory_probo(flow, args.mem_orders)
        if "lme" in engines:
            mem["lme"] = memory_lme(flow, args.mem_orders)

    print()
    print(
        f"N = {flow.n:,}; tuned = gc.collect(); gc.freeze(); gc.set_threshold{tuned}; "
        f"default thresholds {DEFAULT_THRESHOLD}"
    )
    header = (
        f"| {'engine':<10} | {'gc':<7} | {'orders/s':>10} | {'p50 µs':>7} | {'p99 µs':>7} | "
        f"{'p99.9 µs':>8} | {'max µs':>9} | {'wall s':>6} | {'B/resting':>9} | check |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in results:
        p50, p99, p999, mx = _summary(r.lat)
        b = f"{mem[r.engine]:.0f}" if r.engine in mem else "n/a"
        print(
            f"| {r.engine:<10} | {r.gc_mode:<7} | {r.rate:>10,.0f} | {p50:>7.1f} | {p99:>7.1f} | "
            f"{p999:>8.1f} | {mx:>9.1f} | {r.wall_ns / 1e9:>6.2f} | {b:>9} | {r.check} |"
        )

    by = {(r.engine, r.gc_mode): r for r in results}
    print()
    for mode in modes:
        p, lme = by.get(("probo", mode)), by.get(("lme", mode))
        if p and lme:
            ratio = p.rate / lme.rate
            print(
                f"gc {mode}: probo/lightmatchingengine = {ratio:.2f}x "
                f"(target >= {TARGET_RATIO}x: {'PASS' if ratio >= TARGET_RATIO else 'FAIL'})"
            )
        if p:
            p999 = _summary(p.lat)[2]
            print(
                f"gc {mode}: probo p99.9 = {p999:.1f} µs "
                f"(target <= {TARGET_P999_US:.0f} µs: {'PASS' if p999 <= TARGET_P999_US else 'FAIL'})"
            )
    if "probo" in mem:
        print(
            f"probo bytes per resting order = {mem['probo']:.0f} ({args.mem_orders:,} resting; "
            f"target <= {TARGET_BYTES}: {'PASS' if mem['probo'] <= TARGET_BYTES else 'FAIL'})"
        )
    failed = [r for r in results if r.check != "ok"]
    if failed:
        print(
            "ENGINE STATE MISMATCH:",
            "; ".join(f"{r.engine}/{r.gc_mode}: {r.check}" for r in failed),
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
