"""`probo simulate`: bot traders against a running server, for demos and load.

Bots log in like people do (OTP read from the `outbox` SMS provider's file, so the
server must use it), deposit, and trade the open markets (one is created with an admin
phone if there is none): limit orders around a price that drifts per market, so about
a third cross, with the odd market order and cancel. Once a second it prints what the
exchange answered and how fast.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec

from probo.orderbook import CONTRACT_PAYOUT, own_price

BOT_DEPOSIT = 5_000_000  # paise per bot
OTP_WAIT_S = 5.0
REPORT_EVERY_S = 1.0
CANCEL_SHARE = 0.05
MARKET_ORDER_SHARE = 0.05
DRIFT_TICKS = 1
CONNECTIONS_MAX = 200


class Options(msgspec.Struct, frozen=True):
    url: str
    bots: int
    rate: float  # orders per second, all bots together
    duration_s: float  # 0: until interrupted
    outbox: Path
    admin_phone: str | None


def _otp_in(outbox: Path, phone: str, after: float) -> str | None:
    if not outbox.exists():
        return None
    for line in reversed(outbox.read_text().splitlines()):
        message = json.loads(line)
        sent_at = datetime.fromisoformat(message["sent_at"]).timestamp()
        if message["to"] == phone and sent_at >= after:
            return message["otp"]
    return None


async def _read_otp(outbox: Path, phone: str, after: float) -> str:
    deadline = time.monotonic() + OTP_WAIT_S
    while time.monotonic() < deadline:
        otp = await asyncio.to_thread(_otp_in, outbox, phone, after)
        if otp is not None:
            return otp
        await asyncio.sleep(0.05)
    raise RuntimeError(f"no OTP for {phone} in {outbox}: is the server's SMS provider 'outbox'?")


async def _login(http: httpx.AsyncClient, outbox: Path, phone: str) -> dict[str, str]:
    asked = time.time() - 1
    response = await http.post("/api/v1/auth/otp", json={"phone": phone})
    if response.status_code != 202:
        raise RuntimeError(f"OTP for {phone}: {response.status_code} {response.text}")
    otp = await _read_otp(outbox, phone, asked)
    response = await http.post("/api/v1/auth/verify", json={"phone": phone, "otp": otp})
    if response.status_code != 200:
        raise RuntimeError(f"login of {phone}: {response.status_code} {response.text}")
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def _markets(http: httpx.AsyncClient, options: Options) -> list[dict]:
    markets = (await http.get("/api/v1/markets", params={"status": "open", "limit": 20})).json()[
        "items"
    ]
    if markets:
        return markets
    if options.admin_phone is None:
        raise RuntimeError("no open market, and no admin phone (PROBO_ADMIN_PHONES) to create one")
    admin = await _login(http, options.outbox, options.admin_phone)
    body = {
        "title": "Will the simulation end in profit?",
        "category": "simulation",
        "closes_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
    }
    response = await http.post("/api/v1/admin/markets", json=body, headers=admin)
    if response.status_code != 201:
        raise RuntimeError(f"creating a market: {response.status_code} {response.text}")
    return [response.json()]


class Stats:
    def __init__(self) -> None:
        self.answers: Counter[str] = Counter()
        self.latencies_ms: list[float] = []

    def report(self, elapsed_s: float) -> str:
        latencies = sorted(self.latencies_ms)
        p50 = statistics.median(latencies) if latencies else 0.0
        p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
        answers = " ".join(f"{code}:{count}" for code, count in sorted(self.answers.items()))
        line = f"{elapsed_s:6.1f}s  {len(latencies) / REPORT_EVERY_S:7.0f} req/s  p50 {p50:5.1f} ms  p99 {p99:5.1f} ms  {answers}"
        self.answers.clear()
        self.latencies_ms.clear()
        return line


async def _bot(
    http: httpx.AsyncClient, headers: dict[str, str], markets: list[dict], fair: dict[int, int], pace_s: float,
    stats: Stats, stop: asyncio.Event,
) -> None:  # fmt: skip
    rng = random.Random()
    mine: list[int] = []
    next_at = time.monotonic() + rng.random() * pace_s
    while not stop.is_set():
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at += pace_s
        market = rng.choice(markets)
        tick = market["tick"]
        fair[market["id"]] = min(
            CONTRACT_PAYOUT - 2 * tick,
            max(2 * tick, fair[market["id"]] + tick * rng.randint(-DRIFT_TICKS, DRIFT_TICKS)),
        )
        started = time.perf_counter()
        roll = rng.random()
        if roll < CANCEL_SHARE and mine:
            response = await http.delete(
                f"/api/v1/orders/{mine.pop(rng.randrange(len(mine)))}", headers=headers
            )
        else:
            outcome = rng.choice(("yes", "no"))
            yes_price = fair[market["id"]] + tick * rng.randint(-3, 3)
            price = own_price(outcome, yes_price)
            body: dict[str, object] = {"market_id": market["id"], "outcome": outcome, "side": "buy",
                                       "quantity": rng.randint(1, 10), "client_order_id": uuid.uuid4().hex}  # fmt: skip
            if roll < CANCEL_SHARE + MARKET_ORDER_SHARE:
                body["type"] = "market"
            else:
                body.update(
                    type="limit", price=min(CONTRACT_PAYOUT - tick, max(tick, price - price % tick))
                )
            response = await http.post("/api/v1/orders", json=body, headers=headers)
            if response.status_code == 201 and response.json()["status"] == "open":
                mine.append(response.json()["id"])
        stats.latencies_ms.append((time.perf_counter() - started) * 1000)
        stats.answers[str(response.status_code)] += 1


async def simulate(options: Options) -> int:
    limits = httpx.Limits(
        max_connections=CONNECTIONS_MAX, max_keepalive_connections=CONNECTIONS_MAX
    )
    async with httpx.AsyncClient(base_url=options.url, timeout=30, limits=limits) as http:
        markets = await _markets(http, options)
        run = uuid.uuid4().int % 10**5  # new phones each run: OTPs are limited per phone
        bots = []
        for n in range(options.bots):
            headers = await _login(http, options.outbox, f"+9197{(run * 1000 + n) % 10**8:08d}")
            deposit = {"amount": BOT_DEPOSIT, "idempotency_key": uuid.uuid4().hex}
            await http.post("/api/v1/wallet/deposits", json=deposit, headers=headers)
            bots.append(headers)
        print(
            f"{len(bots)} bots trading {len(markets)} market(s) at {options.rate:g} orders/s against {options.url}"
        )
        fair = {m["id"]: m["last_price"] or 500 for m in markets}
        stats, stop = Stats(), asyncio.Event()
        pace_s = len(bots) / options.rate
        tasks = [
            asyncio.create_task(_bot(http, h, markets, fair, pace_s, stats, stop)) for h in bots
        ]
        started = time.monotonic()
        try:
            while not options.duration_s or time.monotonic() - started < options.duration_s:
                await asyncio.sleep(REPORT_EVERY_S)
                print(stats.report(time.monotonic() - started), flush=True)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    return 0
