"""Candles (SPEC §5, §10): OHLCV of the YES price per interval, computed in SQL from
trades, must agree with the trades that made them, page after page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import assert_error
from tests.trading import create_market, funded_trader

INTERVALS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1),
             "1d": timedelta(days=1)}  # fmt: skip
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def expected_candles(trades: list[tuple[datetime, int, int]], step: timedelta) -> list[dict]:
    """From `(created_at, yes_price, quantity)` in trade order: newest candle first."""
    buckets: dict[datetime, list[tuple[int, int]]] = {}
    for at, price, quantity in trades:
        start = EPOCH + step * ((at - EPOCH) // step)
        buckets.setdefault(start, []).append((price, quantity))
    return [
        {
            "start": start.isoformat().replace("+00:00", "Z"),
            "open": fills[0][0],
            "high": max(p for p, _ in fills),
            "low": min(p for p, _ in fills),
            "close": fills[-1][0],
            "volume": sum(q for _, q in fills),
        }
        for start, fills in sorted(buckets.items(), reverse=True)
    ]


async def all_candles(client: httpx.AsyncClient, market: int, interval: str, limit: int) -> list:
    items: list[dict] = []
    cursor = None
    for _ in range(100):
        params: dict[str, object] = {"interval": interval, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(f"/api/v1/markets/{market}/candles", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("candles never ended")


def normalised(candles: list[dict]) -> list[dict]:
    return [
        {**c, "start": datetime.fromisoformat(c["start"]).astimezone(UTC).isoformat()}
        for c in candles
    ]


async def test_candles_of_live_trades_agree_with_the_trades(
    client: httpx.AsyncClient, admin: dict[str, str], outbox_path: Path
) -> None:
    market = (await create_market(client, admin))["id"]
    a = await funded_trader(client, outbox_path, deposit=50_000)
    b = await funded_trader(client, outbox_path, deposit=50_000)
    for yes_price, quantity in ((500, 3), (650, 1), (450, 4), (600, 2)):
        await a.placed(market, "yes", "buy", quantity, yes_price)
        await b.placed(market, "no", "buy", quantity, 1000 - yes_price)  # mint at yes_price
    trades = (await client.get(f"/api/v1/markets/{market}/trades")).json()["items"]
    assert len(trades) == 4
    history = [
        (datetime.fromisoformat(t["created_at"]), t["price"], t["quantity"])
        for t in reversed(trades)
    ]
    for interval, step in INTERVALS.items():
        got = await all_candles(client, market, interval, 50)
        assert normalised(got) == normalised(expected_candles(history, step)), interval
    assert sum(c["volume"] for c in await all_candles(client, market, "1d", 1)) == 10


async def test_candles_page_through_a_long_history_exactly_once(
    client: httpx.AsyncClient, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    """A history spread over days, with gaps, written straight into `trades` (ids
    below zero, never the engine's): every interval, small pages, nothing twice."""
    market = (await create_market(client, admin))["id"]
    start = datetime(2026, 3, 1, 9, 58, 30, tzinfo=UTC)
    offsets_s = [0, 20, 45, 61, 90, 299, 301, 3_599, 3_600, 3_700, 7_300, 86_400, 90_000,
                 3 * 86_400 + 5]  # fmt: skip
    history = []
    for n, offset in enumerate(offsets_s):
        at = start + timedelta(seconds=offset)
        price, quantity = 50 * (2 + (n * 7) % 17), 1 + n % 5
        history.append((at, price, quantity))
        await db.execute(
            "INSERT INTO trades (id, market_id, kind, yes_price, quantity, taker_order_id, "
            "taker_user_id, taker_outcome, taker_side, maker_order_id, maker_user_id, "
            "maker_outcome, maker_side, created_at) "
            "VALUES ($1, $2, 'mint', $3, $4, 0, 0, 'yes', 'buy', 0, 0, 'no', 'buy', $5)",
            -(market * 1000 + n),
            market,
            price,
            quantity,
            at,
        )
    for interval, step in INTERVALS.items():
        want = normalised(expected_candles(history, step))
        for limit in (1, 2, 3, 50):
            assert normalised(await all_candles(client, market, interval, limit)) == want, (
                interval,
                limit,
            )


@pytest.mark.parametrize(
    "params",
    [
        {"interval": "2m"},
        {"interval": "1m", "cursor": "bogus"},
        # Cursors of instants no datetime holds (they were 500s): year 10000, and 2**63 - 1 s.
        {"interval": "1m", "cursor": "aWQ6MjUzNDAyMzAwODAw"},
        {"interval": "1d", "cursor": "aWQ6OTIyMzM3MjAzNjg1NDc3NTgwNw"},
    ],
)
async def test_candles_refuse_bad_parameters(
    client: httpx.AsyncClient, admin: dict[str, str], params: dict
) -> None:
    market = (await create_market(client, admin))["id"]
    response = await client.get(f"/api/v1/markets/{market}/candles", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "validation_error"


async def test_candles_of_unknown_and_quiet_markets(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    assert_error(await client.get("/api/v1/markets/987654321/candles"), 404, "not_found")
    market = (await create_market(client, admin))["id"]
    response = await client.get(f"/api/v1/markets/{market}/candles", params={"interval": "1h"})
    assert response.json() == {"items": [], "next_cursor": None}
