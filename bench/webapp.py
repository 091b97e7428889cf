"""The market page in Chromium: what its first load transfers, and how soon a committed
trade shows on it (SPEC §14; targets: at most 200 KB gzip, within 1 s).

    make bench-webapp                         # = python -m bench.webapp

Set-up (not timed): a fresh database (bench/_servers.py; PROBO_BENCH_DATABASE_URL and
PROBO_BENCH_REDIS_URL name the servers, embedded ones start otherwise), `probo serve`
in a child process (bench/load.py's `probo_server`), a market, and two funded traders
logged in over the API. Debian's Chromium (/usr/bin/chromium) through Playwright.

Measured:
- first load: a new browser context with a trader's session cookie opens the market
  page; every response until the order book and the trades are on the page is counted
  by the bytes that crossed the network (Chrome DevTools Protocol `encodedDataLength`)
  and by its body, and the bodies are gzipped too (what the 200 KB target names);
- trade to screen: `TRADES` times, one trader rests a sell and the other takes it over
  the API; from the moment the taking order is sent until the page's `Trades` region
  shows the new trade (a MutationObserver in the page stamps it), and from the moment
  its answer (sent after the commit) arrives. p50 and max.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.async_api import async_playwright

from bench._servers import drop_database, fresh_database, postgres_admin_url, redis_server_url
from bench.load import probo_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TRADES = 20
FIRST_LOAD_TARGET_BYTES = 200 * 1024
SHOWN_TARGET_S = 1.0
WAIT_S = 10.0

# Stamps, in the page, the wall-clock time each trade line appears.
_OBSERVE_TRADES = """
() => {
  window.__shown = [];
  const region = document.querySelector('section[aria-label="Trades"]');
  new MutationObserver((changes) => {
    for (const change of changes) for (const node of change.addedNodes)
      window.__shown.push([Date.now(), node.textContent]);
  }).observe(region, { childList: true, subtree: true });
}
"""


def otp(outbox: Path, phone: str) -> str:
    for line in reversed(outbox.read_text().splitlines()):
        message = json.loads(line)
        if message["to"] == phone:
            return message["otp"]
    raise RuntimeError(f"no OTP for {phone}")


async def logged_in(http: httpx.AsyncClient, outbox: Path, phone: str) -> dict[str, str]:
    assert (await http.post("/api/v1/auth/otp", json={"phone": phone})).status_code == 202
    verified = await http.post(
        "/api/v1/auth/verify", json={"phone": phone, "otp": otp(outbox, phone)}
    )
    verified.raise_for_status()
    http.cookies.clear()
    return {"Authorization": f"Bearer {verified.json()['token']}"}


async def set_up(http: httpx.AsyncClient, outbox: Path, phones: list[str]) -> tuple[int, list]:
    admin = await logged_in(http, outbox, phones[0])
    market = await http.post(
        "/api/v1/admin/markets",
        json={
            "title": "Will the page show this trade within a second?",
            "description": "bench",
            "category": "bench",
            "closes_at": "2030-01-01T00:00:00+00:00",
        },
        headers=admin,
    )
    market.raise_for_status()
    traders = []
    for phone in phones[1:3]:
        headers = await logged_in(http, outbox, phone)
        deposit = await http.post(
            "/api/v1/wallet/deposits",
            json={"amount": 5_000_000, "idempotency_key": f"bench-{phone}"},
            headers=headers,
        )
        deposit.raise_for_status()
        traders.append(headers)
    return market.json()["id"], traders


async def first_load(page, cdp, base: str, market_id: int) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """(bytes over the network, bodies, bodies gzipped) until the page shows its data."""
    finished: dict[str, int] = {}
    urls: dict[str, str] = {}
    cdp.on(
        "Network.responseReceived", lambda e: urls.__setitem__(e["requestId"], e["response"]["url"])
    )
    cdp.on(
        "Network.loadingFinished",
        lambda e: finished.__setitem__(e["requestId"], e["encodedDataLength"]),
    )
    bodies: list[bytes] = []

    async def keep(response) -> None:  # type: ignore[no-untyped-def]
        try:
            bodies.append(await response.body())
        except Exception:  # a WebSocket upgrade or a redirect has no body
            pass

    page.on("response", lambda r: asyncio.ensure_future(keep(r)))
    await page.goto(f"{base}/#/markets/{market_id}")
    await page.get_by_role("region", name="Order book").get_by_text("₹").first.wait_for()
    await page.wait_for_load_state("networkidle")
    await asyncio.sleep(0.5)
    raw = sum(len(b) for b in bodies)
    return sum(finished.values()), raw, sum(len(gzip.compress(b)) for b in bodies)


async def trades_shown(
    page, http: httpx.AsyncClient, market_id: int, traders: list
) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    """Seconds from send, and from the committed answer, until each trade is on the page."""
    maker, taker = traders
    await page.evaluate(_OBSERVE_TRADES)
    from_send, from_answer = [], []
    for n in range(TRADES):
        price = 300 + 50 * (n % 8)  # on the default tick of 50
        taking = {"market_id": market_id, "type": "limit", "quantity": 1}
        # The maker bids NO at 1000 - p, which rests as YES offered at p; the taker's
        # YES bid at p meets it (a mint).
        resting = taking | {"outcome": "no", "side": "buy", "price": 1000 - price}
        (await http.post("/api/v1/orders", json=resting, headers=maker)).raise_for_status()
        order = taking | {"outcome": "yes", "side": "buy", "price": price}
        await page.evaluate("() => { window.__shown = []; }")
        sent = time.time()
        answer = await http.post("/api/v1/orders", json=order, headers=taker)
        answered = time.time()
        answer.raise_for_status()
        assert answer.json()["status"] == "filled", answer.text
        deadline = time.monotonic() + WAIT_S
        while True:
            shown = await page.evaluate("() => window.__shown")
            if shown:
                at = shown[0][0] / 1000
                from_send.append(at - sent)
                from_answer.append(at - answered)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"trade {n} never shown")
            await asyncio.sleep(0.01)
    return from_send, from_answer


async def measure(base: str, outbox: Path, phones: list[str]) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        market_id, traders = await set_up(http, outbox, phones)
        token = traders[0]["Authorization"].removeprefix("Bearer ")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = await browser.new_context(viewport={"width": 390, "height": 844})
            host = base.removeprefix("http://").split(":")[0]
            await context.add_cookies(
                [{"name": "probo_session", "value": token, "domain": host, "path": "/"}]
            )
            page = await context.new_page()
            cdp = await context.new_cdp_session(page)
            await cdp.send("Network.enable")
            # A resting order, so the book has something to show on the first load.
            rest = {
                "market_id": market_id,
                "outcome": "yes",
                "side": "buy",
                "type": "limit",
                "quantity": 1,
                "price": 100,
            }
            (await http.post("/api/v1/orders", json=rest, headers=traders[1])).raise_for_status()
            network, raw, gzipped = await first_load(page, cdp, base, market_id)
            from_send, from_answer = await trades_shown(page, http, market_id, traders)
            await browser.close()
    from_send.sort()
    from_answer.sort()
    return {
        "first_load_network_bytes": network,
        "first_load_body_bytes": raw,
        "first_load_gzip_bytes": gzipped,
        "trade_shown_from_send_s": (from_send[len(from_send) // 2], from_send[-1]),
        "trade_shown_from_answer_s": (from_answer[len(from_answer) // 2], from_answer[-1]),
    }


def main() -> int:
    with postgres_admin_url() as admin_url, redis_server_url() as redis_url:
        name, url = asyncio.run(fresh_database(admin_url))
        try:
            with tempfile.TemporaryDirectory(prefix="probo-bench-webapp-") as tmp:
                probo = probo_server("bench-webapp", 2, name, url, redis_url, Path(tmp))
                server = probo.server
                try:
                    asyncio.run(server.wait_ready("/readyz"))
                    figures = asyncio.run(
                        measure(f"http://127.0.0.1:{server.port}", probo.outbox, probo.phones)
                    )
                finally:
                    server.stop()
        finally:
            asyncio.run(drop_database(admin_url, name))
    print(
        f"\nthe market page in Chromium ({platform.machine()}, Python {platform.python_version()})"
    )
    print(
        f"first load: {figures['first_load_network_bytes']:,} bytes over the network, "
        f"{figures['first_load_body_bytes']:,} of bodies, {figures['first_load_gzip_bytes']:,} gzipped "
        f"(target <= {FIRST_LOAD_TARGET_BYTES:,} gzipped)"
    )
    send_p50, send_max = figures["trade_shown_from_send_s"]  # type: ignore[misc]
    answer_p50, answer_max = figures["trade_shown_from_answer_s"]  # type: ignore[misc]
    print(
        f"trade shown, {TRADES} trades: from send p50 {send_p50 * 1000:.0f} ms, max {send_max * 1000:.0f} ms; "
        f"from the committed answer p50 {answer_p50 * 1000:.0f} ms, max {answer_max * 1000:.0f} ms "
        f"(target <= {SHOWN_TARGET_S * 1000:.0f} ms)"
    )
    met = figures["first_load_gzip_bytes"] <= FIRST_LOAD_TARGET_BYTES and send_max <= SHOWN_TARGET_S  # type: ignore[operator]
    print("targets:", "met" if met else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
